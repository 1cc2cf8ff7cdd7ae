/*
 * fuzz.h - what the libFuzzer harnesses share: the entry points'
 * prototypes and FUZZ_ASSERT, which aborts (a crash libFuzzer records)
 * when an oracle finds a wrong answer rather than a memory error.
 */
#ifndef SPLITMX_FUZZ_H
#define SPLITMX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond)                                             \
	do {                                                          \
		if (!(cond)) {                                        \
			fprintf(stderr, "%s:%d: oracle failed: %s\n", \
			    __FILE__, __LINE__, #cond);               \
			abort();                                      \
		}                                                     \
	} while (0)

/*
 * The next chunk length for a split-invariance oracle: 1 to max octets,
 * at most left, from a xorshift32 state the input's first byte seeds.
 */
static inline size_t
fuzz_chunk(uint32_t *seed, size_t max, size_t left)
{
	size_t n;

	*seed ^= *seed << 13;
	*seed ^= *seed >> 17;
	*seed ^= *seed << 5;
	n = 1 + *seed % max;
	return n < left ? n : left;
}

#endif
