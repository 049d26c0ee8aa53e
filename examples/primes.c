// Reads n from stdin and prints how many primes are below n (sieve of Eratosthenes):
// a compute-bound workload for fuel determinism and metering overhead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  unsigned long n = 0;
  if (scanf("%lu", &n) != 1 || n < 2) {
    fprintf(stderr, "usage: echo N | primes   (N >= 2)\n");
    return 2;
  }
  unsigned char *composite = calloc(n, 1);
  if (composite == NULL) {
    fprintf(stderr, "cannot allocate %lu bytes\n", n);
    return 1;
  }
  unsigned long count = 0;
  for (unsigned long i = 2; i < n; i++) {
    if (composite[i]) continue;
    count++;
    // i * i >= n: nothing left to cross out (tested by division, since i * i overflows 32 bits above 65535)
    if (i > (n - 1) / i) continue;
    for (unsigned long j = i * i; j < n; j += i) composite[j] = 1;
  }
  printf("primes below %lu: %lu\n", n, count);
  free(composite);
  return 0;
}
