/* The stores, by name: the scheme of a store's URL names its driver, as
 * SQLite finds a VFS by name. A new database is a driver file and a row. */
#include <string.h>

#include "sql-driver.h"

static const struct reg_sql_driver *const drivers[] = {
    &reg_sql_sqlite,
    &reg_sql_postgresql,
};

const struct reg_sql_driver *reg_sql_driver_find(const char *url)
{
  size_t len = strcspn(url, ":");

  for (size_t i = 0; url[len] == ':' && i < sizeof(drivers) / sizeof(*drivers);
       i++)
    if (strlen(drivers[i]->name) == len &&
        strncmp(url, drivers[i]->name, len) == 0)
      return drivers[i];
  return NULL;
}
