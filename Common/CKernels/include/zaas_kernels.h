#ifndef ZAAS_KERNELS_H
#define ZAAS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// out[i] = scales[i] * query_scale * Σ_j vectors[i * dims + j] * query[j], for i < count:
/// 8-bit dot products of every stored chunk vector with a quantised question, accumulated
/// exactly in 32 bits. Uses AVX2 when the CPU has it (checked once), plain C otherwise.
void zaas_i8_scores(const int8_t *vectors, const float *scales, size_t count, size_t dims,
                    const int8_t *query, float query_scale, float *out);

/// out[i] = number of differing bits between bits[i * words …] and query[0 … words), for i < count:
/// Hamming distances of sign-bit sketches.
void zaas_hamming(const uint64_t *bits, size_t count, size_t words, const uint64_t *query, uint16_t *out);

/// out[k] = scales[ids[k]] * query_scale * Σ_j vectors[ids[k] * dims + j] * query[j]: the 8-bit
/// scores of selected chunks only.
void zaas_i8_scores_of(const int8_t *vectors, const float *scales, const uint32_t *ids, size_t count,
                       size_t dims, const int8_t *query, float query_scale, float *out);

/// Softmax of each of `rows` rows of `width` floats over its first `valid` columns; the other
/// columns become 0. exp is a vectorisable polynomial (Cephes expf: relative error below 2e-7).
void zaas_masked_softmax(float *scores, size_t rows, size_t width, size_t valid);

#endif
