/* Feeds files to LLVMFuzzerTestOneInput without libFuzzer, so that the
 * seed corpus runs through the target in every build (`make check`) and a
 * crash found by the fuzzer can be replayed under gdb. Arguments: files or
 * directories; none: $top_srcdir/tests/fuzz/corpus/FUZZ_CORPUS (each
 * target's replay program is built with its own). */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_CORPUS
#define FUZZ_CORPUS "dns"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  uint8_t *data;
  long size;

  if (!f)
    return -1;
  if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) < 0) {
    fclose(f);
    return -1;
  }
  /* A copy of exactly size bytes, so that ASan sees any overread. */
  data = malloc(size ? (size_t)size : 1);
  if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
    free(data);
    fclose(f);
    return -1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(data, (size_t)size);
  free(data);
  return 0;
}

static int replay(const char *path, unsigned *count)
{
  struct stat st;
  DIR *dir;
  struct dirent *entry;
  char child[PATH_MAX];
  int rc = 0;

  if (stat(path, &st) < 0) {
    perror(path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (replay_file(path) < 0) {
      perror(path);
      return -1;
    }
    (*count)++;
    return 0;
  }
  dir = opendir(path);
  if (!dir) {
    perror(path);
    return -1;
  }
  while ((entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.')
      continue;
    snprintf(child, sizeof(child), "%s/%s", path, entry->d_name);
    if (replay(child, count) < 0)
      rc = -1;
  }
  closedir(dir);
  return rc;
}

int main(int argc, char **argv)
{
  char fallback[PATH_MAX];
  const char *top = getenv("top_srcdir");
  unsigned count = 0;
  int rc = 0;

  if (argc < 2) {
    snprintf(fallback, sizeof(fallback), "%s/tests/fuzz/corpus/" FUZZ_CORPUS,
             top ? top : ".");
    rc = replay(fallback, &count);
  }
  for (int i = 1; i < argc; i++)
    if (replay(argv[i], &count) < 0)
      rc = -1;
  printf("%u inputs replayed\n", count);
  return rc == 0 && count > 0 ? 0 : 1;
}
