#include "zaas_kernels.h"

// The same loop twice: the compiler vectorises each for its target (sign-extend to 16 bits,
// multiply-add pairs into 32 bits).
#define ZAAS_SCORES_BODY                                                                    \
    for (size_t i = 0; i < count; i++) {                                                    \
        const int8_t *v = vectors + i * dims;                                               \
        int32_t sum = 0;                                                                    \
        for (size_t j = 0; j < dims; j++) sum += (int16_t)v[j] * (int16_t)query[j];         \
        out[i] = (float)sum * scales[i] * query_scale;                                      \
    }

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void scores_avx2(const int8_t *vectors, const float *scales,
                                                        size_t count, size_t dims, const int8_t *query,
                                                        float query_scale, float *out) {
    ZAAS_SCORES_BODY
}
#endif

static void scores_generic(const int8_t *vectors, const float *scales, size_t count, size_t dims,
                           const int8_t *query, float query_scale, float *out) {
    ZAAS_SCORES_BODY
}

void zaas_i8_scores(const int8_t *vectors, const float *scales, size_t count, size_t dims,
                    const int8_t *query, float query_scale, float *out) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        scores_avx2(vectors, scales, count, dims, query, query_scale, out);
        return;
    }
#endif
    scores_generic(vectors, scales, count, dims, query, query_scale, out);
}

#define ZAAS_HAMMING_BODY                                                                   \
    for (size_t i = 0; i < count; i++) {                                                    \
        const uint64_t *b = bits + i * words;                                               \
        unsigned distance = 0;                                                              \
        for (size_t w = 0; w < words; w++) distance += (unsigned)__builtin_popcountll(b[w] ^ query[w]); \
        out[i] = (uint16_t)distance;                                                        \
    }

#if defined(__x86_64__)
__attribute__((target("popcnt"))) static void hamming_popcnt(const uint64_t *bits, size_t count, size_t words,
                                                             const uint64_t *query, uint16_t *out) {
    ZAAS_HAMMING_BODY
}
#endif

static void hamming_generic(const uint64_t *bits, size_t count, size_t words, const uint64_t *query,
                            uint16_t *out) {
    ZAAS_HAMMING_BODY
}

void zaas_hamming(const uint64_t *bits, size_t count, size_t words, const uint64_t *query, uint16_t *out) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("popcnt")) {
        hamming_popcnt(bits, count, words, query, out);
        return;
    }
#endif
    hamming_generic(bits, count, words, query, out);
}

void zaas_i8_scores_of(const int8_t *vectors, const float *scales, const uint32_t *ids, size_t count,
                       size_t dims, const int8_t *query, float query_scale, float *out) {
    for (size_t k = 0; k < count; k++) {
        zaas_i8_scores(vectors + (size_t)ids[k] * dims, scales + ids[k], 1, dims, query, query_scale, out + k);
    }
}

// exp(x) for x <= 0 (softmax inputs after subtracting the row maximum): x = n ln 2 + r with
// |r| <= ln 2 / 2, exp(r) by Cephes' degree-5 polynomial, 2^n by building the exponent bits.
static inline float zaas_exp_nonpositive(float x) {
    if (x < -87.0f) x = -87.0f;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r2 + r + 1.0f;
    union { uint32_t bits; float value; } scale = { .bits = (uint32_t)((int32_t)n + 127) << 23 };
    return e * scale.value;
}

// Self-attention of one sequence, per head: scores of each row against the real keys (vectorised
// over keys, from a transposed copy of the head's keys), softmax, then the weighted sum of values
// (vectorised over the head's dimensions). One call replaces two small BLAS products and a softmax
// per head, whose call overhead dominated for short sequences.
#define ZAAS_ATTENTION_BODY                                                                 \
    size_t d = hidden / heads, stride = 3 * hidden, padded = (valid + 31) / 32 * 32;        \
    float *keys = scratch, *s = scratch + d * padded;                                       \
    for (size_t h = 0; h < heads; h++) {                                                    \
        /* The head's keys transposed, [d][padded], zeros past the real ones. */            \
        for (size_t t = 0; t < d; t++)                                                      \
            for (size_t j = valid; j < padded; j++) keys[t * padded + j] = 0;               \
        for (size_t j = 0; j < valid; j++) {                                                \
            const float *k = qkv + j * stride + hidden + h * d;                             \
            for (size_t t = 0; t < d; t++) keys[t * padded + j] = k[t];                     \
        }                                                                                   \
        for (size_t i = 0; i < length; i++) {                                               \
            const float *q = qkv + i * stride + h * d;                                      \
            /* Scores 32 keys at a time, the sums in four registers across the head. */     \
            for (size_t j0 = 0; j0 < padded; j0 += 32) {                                    \
                float acc[32] = {0};                                                        \
                for (size_t t = 0; t < d; t++) {                                            \
                    float qt = q[t] * scale;                                                \
                    const float *row = keys + t * padded + j0;                              \
                    for (int x = 0; x < 32; x++) acc[x] += qt * row[x];                     \
                }                                                                           \
                for (int x = 0; x < 32; x++) s[j0 + x] = acc[x];                            \
            }                                                                               \
            float maximum = -__builtin_inff();                                              \
            for (size_t j = 0; j < valid; j++) maximum = s[j] > maximum ? s[j] : maximum;   \
            float sum = 0;                                                                  \
            for (size_t j = 0; j < valid; j++) {                                            \
                s[j] = zaas_exp_nonpositive(s[j] - maximum);                                \
                sum += s[j];                                                                \
            }                                                                               \
            float inverse = 1.0f / sum;                                                     \
            float *out = context + i * context_stride + h * d;                              \
            const float *values = qkv + 2 * hidden + h * d;                                 \
            if (d == 32) {                                                                  \
                /* MiniLM's heads: the sum stays in four registers. */                      \
                float acc[32] = {0};                                                        \
                for (size_t j = 0; j < valid; j++) {                                        \
                    float p = s[j];                                                         \
                    const float *v = values + j * stride;                                   \
                    for (int t = 0; t < 32; t++) acc[t] += p * v[t];                        \
                }                                                                           \
                for (int t = 0; t < 32; t++) out[t] = acc[t] * inverse;                     \
            } else {                                                                        \
                for (size_t t = 0; t < d; t++) out[t] = 0;                                  \
                for (size_t j = 0; j < valid; j++) {                                        \
                    float p = s[j] * inverse;                                               \
                    const float *v = values + j * stride;                                   \
                    for (size_t t = 0; t < d; t++) out[t] += p * v[t];                      \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void attention_avx2(const float *qkv, size_t length, size_t valid,
                                                               size_t hidden, size_t heads, float scale,
                                                               float *context, size_t context_stride,
                                                               float *scratch) {
    ZAAS_ATTENTION_BODY
}
#endif

static void attention_generic(const float *qkv, size_t length, size_t valid, size_t hidden, size_t heads,
                              float scale, float *context, size_t context_stride, float *scratch) {
    ZAAS_ATTENTION_BODY
}

void zaas_attention(const float *qkv, size_t length, size_t valid, size_t hidden, size_t heads, float scale,
                    float *context, size_t context_stride, float *scratch) {
    if (valid == 0 || heads == 0) return;
#if defined(__x86_64__)
    // The same choice as the matrix products' (gemm.c), so a test can run each path.
    if (zaas_gemm_isa() == ZAAS_GEMM_AVX2) {
        attention_avx2(qkv, length, valid, hidden, heads, scale, context, context_stride, scratch);
        return;
    }
#endif
    attention_generic(qkv, length, valid, hidden, heads, scale, context, context_stride, scratch);
}

/* BM25, term at a time. A chunk's part is weight·f / (f + (constant + length_weight·length)),
 * computed exactly as written (no fused multiply-add), so that the walk and plain reference
 * code give the same bits. A term's postings hold each chunk
 * once, so there are no conflicts between iterations. */
#pragma clang fp contract(off)

size_t zaas_bm25_walk(const uint32_t *chunks, const uint16_t *counts, size_t count, const uint16_t *lengths,
                      float weight, float constant, float length_weight, float *accumulated, int32_t *touched,
                      size_t touched_count)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t chunk = chunks[i];
        float before = accumulated[chunk];
        float frequency = (float)counts[i];
        float norm = constant + length_weight * (float)lengths[chunk];
        accumulated[chunk] = before + weight * frequency / (frequency + norm);
        touched[touched_count] = (int32_t)chunk;
        touched_count += before == 0.0f;
    }
    return touched_count;
}
