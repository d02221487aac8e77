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

#define ZAAS_SOFTMAX_BODY                                                                   \
    for (size_t i = 0; i < rows; i++) {                                                     \
        float *row = scores + i * width;                                                    \
        float maximum = -__builtin_inff();                                                  \
        for (size_t j = 0; j < valid; j++) maximum = row[j] > maximum ? row[j] : maximum;   \
        float sum = 0;                                                                      \
        for (size_t j = 0; j < valid; j++) {                                                \
            float value = zaas_exp_nonpositive(row[j] - maximum);                           \
            row[j] = value;                                                                 \
            sum += value;                                                                   \
        }                                                                                   \
        float inverse = 1.0f / sum;                                                         \
        for (size_t j = 0; j < valid; j++) row[j] *= inverse;                               \
        for (size_t j = valid; j < width; j++) row[j] = 0;                                  \
    }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void softmax_avx2(float *scores, size_t rows, size_t width,
                                                             size_t valid) {
    ZAAS_SOFTMAX_BODY
}
#endif

static void softmax_generic(float *scores, size_t rows, size_t width, size_t valid) {
    ZAAS_SOFTMAX_BODY
}

void zaas_masked_softmax(float *scores, size_t rows, size_t width, size_t valid) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        softmax_avx2(scores, rows, width, valid);
        return;
    }
#endif
    softmax_generic(scores, rows, width, valid);
}
