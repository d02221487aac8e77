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

/// BM25 term at a time: for each posting i < count, accumulated[chunks[i]] +=
/// weight·f / (f + (constant + length_weight·lengths[chunks[i]])) with f = counts[i], and the chunk
/// is appended to touched (from touched_count on) when its accumulator was 0. Returns the new
/// touched_count. Postings must be distinct chunks; no fused multiply-add.
size_t zaas_bm25_walk(const uint32_t *chunks, const uint16_t *counts, size_t count, const uint16_t *lengths,
                      float weight, float constant, float length_weight, float *accumulated, int32_t *touched,
                      size_t touched_count);

/// out[k] = scales[ids[k]] * query_scale * Σ_j vectors[ids[k] * dims + j] * query[j]: the 8-bit
/// scores of selected chunks only.
void zaas_i8_scores_of(const int8_t *vectors, const float *scales, const uint32_t *ids, size_t count,
                       size_t dims, const int8_t *query, float query_scale, float *out);


/// Self-attention of one sequence of `length` rows whose first `valid` are real tokens: for every
/// head h (of `heads`, each d = hidden / heads wide) and row i, context[i * context_stride + h·d + t]
/// = Σ_{j < valid} softmax_j(scale · q_i · k_j) · v_j[t], where row r of `qkv` holds q | k | v
/// (3 · hidden floats). `scratch` holds at least (d + 1) · P floats, P being `valid`
/// rounded up to a multiple of 32. exp is a vectorisable
/// polynomial (Cephes expf: relative error below 2e-7).
void zaas_attention(const float *qkv, size_t length, size_t valid, size_t hidden, size_t heads, float scale,
                    float *context, size_t context_stride, float *scratch);

/// Matrix products with weights packed once (gemm.c). Which kernel runs: AVX2 + FMA when the
/// processor has them, unless ZAAS_GEMM_ISA=generic (for the process) or zaas_gemm_set_isa (for
/// the calling thread) chose plain C.
enum { ZAAS_GEMM_GENERIC = 0, ZAAS_GEMM_AVX2 = 1 };
/// The kernel this thread uses.
int zaas_gemm_isa(void);
/// Chooses the kernel for the calling thread only (tests and benchmarks; other threads keep the
/// process's choice); -1 goes back to the process's choice. 0 when the processor lacks it.
int zaas_gemm_set_isa(int isa);

/// A copy of `weights` ([k][n], row-major; n a multiple of 16) in the kernels' layout, 64-byte
/// aligned; NULL when n is not a multiple of 16 or memory is short. Free with zaas_packed_free.
float *zaas_packed_new(const float *weights, size_t k, size_t n);
void zaas_packed_free(float *packed);

/// What is done with a · W + bias: stored, stored after GELU (erf form), or added to `out`.
enum { ZAAS_EPILOGUE_STORE = 0, ZAAS_EPILOGUE_GELU = 1, ZAAS_EPILOGUE_ACCUMULATE = 2 };

/// out[r][c] (row stride ldo) = epilogue(Σ_j a[r][j] · W[j][c] + bias[c]) for r < m and
/// column_begin <= c < column_end (multiples of 16 unless column_end is n): `a` is [m][k] with row
/// stride lda, `packed` from zaas_packed_new(W, k, n), bias NULL for none. Column ranges let
/// threads share one product.
void zaas_sgemm_packed(const float *a, size_t lda, size_t m, size_t k, const float *packed, size_t n,
                       const float *bias, float *out, size_t ldo, int epilogue, size_t column_begin,
                       size_t column_end);
/// The same with the kernel named (threads that share one product run the caller's kernel).
void zaas_sgemm_packed_isa(int isa, const float *a, size_t lda, size_t m, size_t k, const float *packed, size_t n,
                           const float *bias, float *out, size_t ldo, int epilogue, size_t column_begin,
                           size_t column_end);

#endif
