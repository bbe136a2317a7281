/* What the drivers' migrations share (sql-driver.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sql-driver.h"

int sql_refuse_case_twins(const struct reg_sql_driver *sql, struct reg_sql *db,
                          char *errmsg, size_t len)
{
  static const char query[] =
      "SELECT 'services ' || group_concat(name, ', ') FROM services"
      " GROUP BY lower(name) HAVING count(*) > 1 UNION ALL"
      " SELECT 'principals ' || group_concat(name, ', ') FROM principals"
      " GROUP BY lower(name) HAVING count(*) > 1";
  char twins[160] = "";
  struct reg_sql_stmt *stmt;
  int r = sql->prepare(db, query, &stmt);

  if (r < 0)
    return r;
  while ((r = sql->step(stmt)) > 0) {
    size_t used = strlen(twins);

    snprintf(twins + used, sizeof(twins) - used, "%s%s", used ? "; " : "",
             sql->column_text(stmt, 0));
  }
  sql->finalize(stmt);
  if (r < 0 || twins[0] == '\0')
    return r;
  snprintf(errmsg, len,
           "names that differ only in case (%s): this nlb compares names as "
           "DNS does; delete all but one of each with the nlb that made "
           "them, then start this one",
           twins);
  return -EIO;
}
