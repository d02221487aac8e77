// Matrix products with weights packed once at load (issue 20): out = epilogue(a · W + bias) for
// the encoder's Linear layers, where a has few rows (a question is ~20 tokens) and W is a fixed
// [k, n] weight matrix. OpenBLAS packs W on every call, which costs as much as the product itself
// at these shapes; here W is laid out once in panels of 16 columns ([n/16][k][16]), so the
// micro-kernels stream it with plain loads.
//
// Kernels: AVX2 + FMA (6 rows × 16 columns, 12 accumulators in ymm registers) and plain C. The
// processor is asked once which it has; ZAAS_GEMM_ISA=generic picks plain C for the process, and
// zaas_gemm_set_isa picks one for the calling thread only (tests and benchmarks). Accumulation is
// float32 throughout, in k order per output.
//
// No AVX-512 kernel: on Zen 4 a 512-bit FMA issues as two 256-bit halves, so the peak is the same
// two 8-wide FMAs a cycle AVX2 reaches; and the machines here do not report AVX-512, so such a
// kernel could not be tested.

#include "zaas_kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { PANEL = 16 };

// The processor's choice, made once for the process; a thread may override it for itself
// (zaas_gemm_set_isa), so a test comparing kernels never changes what other threads compute.
static _Atomic int process_isa = -1;
static _Thread_local int thread_isa = -1;

static _Atomic int processor_isa = -1;

// The best kernel the processor runs, asked once (products check a named kernel against it).
static int best_isa(void) {
    int isa = processor_isa;
    if (isa >= 0) return isa;
    isa = ZAAS_GEMM_GENERIC;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ZAAS_GEMM_AVX2;
#endif
    processor_isa = isa;
    return isa;
}

int zaas_gemm_isa(void) {
    if (thread_isa >= 0) return thread_isa;
    int isa = process_isa;
    if (isa >= 0) return isa;
    isa = best_isa();
    const char *forced = getenv("ZAAS_GEMM_ISA");
    if (forced && strcmp(forced, "generic") == 0) isa = ZAAS_GEMM_GENERIC;
    process_isa = isa;
    return isa;
}

int zaas_gemm_set_isa(int isa) {
    if (isa == -1) {
        thread_isa = -1;
        return 1;
    }
    if (isa < ZAAS_GEMM_GENERIC || isa > best_isa()) return 0;
    thread_isa = isa;
    return 1;
}

float *zaas_packed_new(const float *weights, size_t k, size_t n) {
    if (n == 0 || n % PANEL != 0 || k == 0) return NULL;
    size_t bytes = k * n * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    float *packed = aligned_alloc(64, bytes);
    if (!packed) return NULL;
    for (size_t p = 0; p < n / PANEL; p++) {
        float *panel = packed + p * k * PANEL;
        for (size_t row = 0; row < k; row++) memcpy(panel + row * PANEL, weights + row * n + p * PANEL, PANEL * sizeof(float));
    }
    return packed;
}

void zaas_packed_free(float *packed) { free(packed); }

// GELU with erf, x·Φ(x) (BERT's exact form): erf as a rational function, within 5e-7, branch-free
// so the loops vectorise (the same polynomial as BertEncoder.erf32).
static inline float gelu_erf(float value) {
    float x = value * 0.70710677f;
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    float x2 = x * x;
    float p = -2.7261423e-10f;
    p = p * x2 + 2.7706814e-08f;
    p = p * x2 - 2.1010240e-06f;
    p = p * x2 - 5.6925064e-05f;
    p = p * x2 - 7.3499063e-04f;
    p = p * x2 - 2.9546000e-03f;
    p = p * x2 - 1.6096033e-02f;
    float q = -1.4566072e-05f;
    q = q * x2 - 2.1337406e-04f;
    q = q * x2 - 1.6828270e-03f;
    q = q * x2 - 7.3733292e-03f;
    q = q * x2 - 1.4264739e-02f;
    return 0.5f * value * (1.0f + x * p / q);
}

#define GELU_ROW(row, count)                                                       \
    for (int i_ = 0; i_ < (count); i_++) (row)[i_] = gelu_erf((row)[i_]);

// ---- plain C ----

static void gemm_generic(const float *a, size_t lda, size_t m, size_t k, const float *packed, const float *bias,
                         float *out, size_t ldo, int epilogue, size_t panel_begin, size_t panel_end) {
    for (size_t p = panel_begin; p < panel_end; p++) {
        const float *panel = packed + p * k * PANEL;
        for (size_t r = 0; r < m; r++) {
            float acc[PANEL];
            for (int j = 0; j < PANEL; j++) acc[j] = bias ? bias[p * PANEL + j] : 0.0f;
            const float *row = a + r * lda;
            for (size_t kk = 0; kk < k; kk++) {
                float value = row[kk];
                for (int j = 0; j < PANEL; j++) acc[j] += value * panel[kk * PANEL + j];
            }
            float *o = out + r * ldo + p * PANEL;
            if (epilogue == ZAAS_EPILOGUE_ACCUMULATE) {
                for (int j = 0; j < PANEL; j++) o[j] += acc[j];
            } else {
                for (int j = 0; j < PANEL; j++) o[j] = acc[j];
                if (epilogue == ZAAS_EPILOGUE_GELU) { GELU_ROW(o, PANEL) }
            }
        }
    }
}

#if defined(__x86_64__)

// ---- AVX2 + FMA: MR rows × one panel (two ymm per row) ----

#define AVX2_ROWS 6

__attribute__((target("avx2,fma"), always_inline)) static inline void
kernel_avx2(const float *a, size_t lda, size_t k, const float *panel, const float *next, const float *bias,
            float *out, size_t ldo, int epilogue, const int mr) {
    __m256 acc[AVX2_ROWS][2];
    __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    for (int r = 0; r < mr; r++) {
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    for (size_t kk = 0; kk < k; kk++) {
        __m256 w0 = _mm256_load_ps(panel + kk * PANEL);
        __m256 w1 = _mm256_load_ps(panel + kk * PANEL + 8);
        // The last block of rows fetches the next panel into the cache as it goes: the weights are
        // larger than L2, and each panel is read from L3 once, for every block.
        if (next) _mm_prefetch((const char *)(next + kk * PANEL), _MM_HINT_T0);
        for (int r = 0; r < mr; r++) {
            __m256 value = _mm256_broadcast_ss(a + r * lda + kk);
            acc[r][0] = _mm256_fmadd_ps(value, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(value, w1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *o = out + r * ldo;
        if (epilogue == ZAAS_EPILOGUE_ACCUMULATE) {
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[r][0]));
            _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), acc[r][1]));
        } else {
            _mm256_storeu_ps(o, acc[r][0]);
            _mm256_storeu_ps(o + 8, acc[r][1]);
            if (epilogue == ZAAS_EPILOGUE_GELU) { GELU_ROW(o, PANEL) }
        }
    }
}

__attribute__((target("avx2,fma"))) static void gemm_avx2_rows(const float *a, size_t lda, size_t m, size_t k,
                                                               const float *packed, const float *bias, float *out,
                                                               size_t ldo, int epilogue, size_t panel_begin,
                                                               size_t panel_end) {
    for (size_t p = panel_begin; p < panel_end; p++) {
        const float *panel = packed + p * k * PANEL;
        const float *b = bias ? bias + p * PANEL : NULL;
        // Rows in blocks of as equal a size as the fewest blocks allow (19 rows: 5, 5, 5, 4, not
        // 6, 6, 6, 1): a block of one row has two accumulators, too few to hide the FMA latency.
        size_t blocks = (m + AVX2_ROWS - 1) / AVX2_ROWS, base = m / blocks, extra = m % blocks;
        for (size_t block = 0, r = 0; block < blocks; block++) {
            size_t rows = base + (block < extra ? 1 : 0);
            const float *ar = a + r * lda;
            float *o = out + r * ldo + p * PANEL;
            r += rows;
            const float *next = block + 1 == blocks && p + 1 < panel_end ? panel + k * PANEL : NULL;
            switch (rows) {
            case 6: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 6); break;
            case 5: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 5); break;
            case 4: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 4); break;
            case 3: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 3); break;
            case 2: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 2); break;
            default: kernel_avx2(ar, lda, k, panel, next, b, o, ldo, epilogue, 1); break;
            }
        }
    }
}

// Rows of `a` taken at a time: as many as fit in half of a core's L2 (512 KiB here), a multiple
// of the kernel's 6. Every panel of the weights passes over the same rows, so those rows are read
// from L2, not from memory once per panel: a canon build's batch (32 chunks of ~80 tokens, 2 500
// rows; 15 MB for the 1536-wide products) was read 24 to 96 times per product before.
#define AVX2_CHUNK_BYTES (256 * 1024)

__attribute__((target("avx2,fma"))) static void gemm_avx2(const float *a, size_t lda, size_t m, size_t k,
                                                          const float *packed, const float *bias, float *out,
                                                          size_t ldo, int epilogue, size_t panel_begin,
                                                          size_t panel_end) {
    size_t chunk = AVX2_CHUNK_BYTES / (k * sizeof(float)) / AVX2_ROWS * AVX2_ROWS;
    if (chunk < AVX2_ROWS) chunk = AVX2_ROWS;
    for (size_t r = 0; r < m; r += chunk) {
        size_t rows = m - r < chunk ? m - r : chunk;
        gemm_avx2_rows(a + r * lda, lda, rows, k, packed, bias, out + r * ldo, ldo, epilogue, panel_begin, panel_end);
    }
}

#endif

void zaas_sgemm_packed(const float *a, size_t lda, size_t m, size_t k, const float *packed, size_t n,
                       const float *bias, float *out, size_t ldo, int epilogue, size_t column_begin,
                       size_t column_end) {
    zaas_sgemm_packed_isa(zaas_gemm_isa(), a, lda, m, k, packed, n, bias, out, ldo, epilogue, column_begin,
                          column_end);
}

void zaas_sgemm_packed_isa(int isa, const float *a, size_t lda, size_t m, size_t k, const float *packed, size_t n,
                           const float *bias, float *out, size_t ldo, int epilogue, size_t column_begin,
                           size_t column_end) {
    if (column_end > n) column_end = n;
    if (m == 0 || column_begin >= column_end) return;
    if (isa < ZAAS_GEMM_GENERIC || isa > best_isa()) isa = ZAAS_GEMM_GENERIC;
    size_t panel_begin = column_begin / PANEL, panel_end = (column_end + PANEL - 1) / PANEL;
    switch (isa) {
#if defined(__x86_64__)
    case ZAAS_GEMM_AVX2:
        gemm_avx2(a, lda, m, k, packed, bias, out, ldo, epilogue, panel_begin, panel_end);
        return;
#endif
    default:
        gemm_generic(a, lda, m, k, packed, bias, out, ldo, epilogue, panel_begin, panel_end);
    }
}
