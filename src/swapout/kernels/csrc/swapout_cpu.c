/* Fused swapout for the CPU: Y = Theta1*X + Theta2*F, masks from Philox4x32-10.
 *
 * Masks are never stored. Element e of a call keyed by `seed` takes one 32-bit Philox word; its low
 * 16 bits decide Theta1 (kept when below t1 = round(theta1 * 65536)) and its high 16 bits Theta2.
 * The backward pass recomputes the same words from the same seed.
 *
 * Philox4x32-10 is from Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3"
 * (SC 2011). Words are assigned to elements tile by tile so that the generator vectorises: tile t
 * holds 4*LANES elements, lane k of the tile runs counter t*LANES + k, and word w of that counter
 * goes to element t*4*LANES + w*LANES + k, so a tile's words, read in order, follow its elements.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16  /* a multiple of 8, the AVX2 width */
#define TILE (4 * LANES)

#if defined(__AVX2__)
#include <immintrin.h>
/* Compilers leave the scalar loop below unvectorised (they unroll the lanes, then miss the widening
 * multiply), and the generator then cost about nine residual adds. Written out for AVX2 (and so for
 * AVX-512 processors too), it costs about two and a half. */
static inline void mulhilo8(__m256i a, __m256i m, __m256i *hi, __m256i *lo) {
    /* 32x32 -> 64-bit products: the even lanes from one vpmuludq, the odd lanes from another */
    __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

static inline void philox_tile(uint64_t tile, uint64_t seed, uint32_t out[4][LANES]) {
    const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    for (int v = 0; v < LANES; v += 8) {
        uint32_t lo[8], hi[8];
        for (int k = 0; k < 8; k++) {
            uint64_t ctr = tile * LANES + (uint64_t)(v + k);
            lo[k] = (uint32_t)ctr; hi[k] = (uint32_t)(ctr >> 32);
        }
        __m256i c0 = _mm256_loadu_si256((const __m256i *)lo), c1 = _mm256_loadu_si256((const __m256i *)hi);
        __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int round = 0; round < 10; round++) {
            __m256i hi0, lo0, hi1, lo1;
            mulhilo8(c0, m0, &hi0, &lo0);
            mulhilo8(c2, m1, &hi1, &lo1);
            c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
            c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
            c1 = lo1; c3 = lo0;
            k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
        }
        _mm256_storeu_si256((__m256i *)&out[0][v], c0); _mm256_storeu_si256((__m256i *)&out[1][v], c1);
        _mm256_storeu_si256((__m256i *)&out[2][v], c2); _mm256_storeu_si256((__m256i *)&out[3][v], c3);
    }
}
#else
static inline void philox_tile(uint64_t tile, uint64_t seed, uint32_t out[4][LANES]) {
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int k = 0; k < LANES; k++) {
        uint64_t ctr = tile * LANES + (uint64_t)k;
        c0[k] = (uint32_t)ctr; c1[k] = (uint32_t)(ctr >> 32); c2[k] = 0; c3[k] = 0;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < LANES; k++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[k];
            uint64_t p1 = (uint64_t)0xCD9E8D57u * c2[k];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[k] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[k] ^ k1;
            c1[k] = (uint32_t)p1; c3[k] = (uint32_t)p0; c0[k] = n0; c2[k] = n2;
        }
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    memcpy(out[0], c0, sizeof c0); memcpy(out[1], c1, sizeof c1);
    memcpy(out[2], c2, sizeof c2); memcpy(out[3], c3, sizeof c3);
}
#endif

/* Forward: y = m1*x + m2*f. Backward: gx = m1*g, gf = m2*g. A tile's word j belongs to element
 * tile*TILE + j; the last tile stops at n. */
#define DEFINE_KERNELS(T, SUFFIX)                                                                   \
void swapout_fwd_##SUFFIX(const T *restrict x, const T *restrict f, T *restrict y, int64_t n,       \
                          uint64_t seed, uint32_t t1, uint32_t t2, int threads) {                   \
    int64_t tiles = (n + TILE - 1) / TILE;                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                               \
    for (int64_t t = 0; t < tiles; t++) {                                                           \
        uint32_t r[4][LANES];                                                                       \
        philox_tile((uint64_t)t, seed, r);                                                          \
        const uint32_t *w = &r[0][0];                                                               \
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;                           \
        const T *xs = x + base, *fs = f + base;                                                     \
        T *ys = y + base;                                                                           \
        for (int64_t j = 0; j < len; j++)                                                           \
            ys[j] = ((w[j] & 0xFFFFu) < t1 ? xs[j] : (T)0) + ((w[j] >> 16) < t2 ? fs[j] : (T)0);    \
    }                                                                                               \
}                                                                                                   \
void swapout_bwd_##SUFFIX(const T *restrict g, T *restrict gx, T *restrict gf, int64_t n,           \
                          uint64_t seed, uint32_t t1, uint32_t t2, int threads) {                   \
    int64_t tiles = (n + TILE - 1) / TILE;                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                               \
    for (int64_t t = 0; t < tiles; t++) {                                                           \
        uint32_t r[4][LANES];                                                                       \
        philox_tile((uint64_t)t, seed, r);                                                          \
        const uint32_t *w = &r[0][0];                                                               \
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;                           \
        const T *gs = g + base;                                                                     \
        T *xs = gx + base, *fs = gf + base;                                                         \
        for (int64_t j = 0; j < len; j++) {                                                         \
            xs[j] = (w[j] & 0xFFFFu) < t1 ? gs[j] : (T)0;                                           \
            fs[j] = (w[j] >> 16) < t2 ? gs[j] : (T)0;                                               \
        }                                                                                           \
    }                                                                                               \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

/* The masks themselves, one byte each (bit 0: Theta1, bit 1: Theta2), for tests and inspection. */
void swapout_masks(uint8_t *out, int64_t n, uint64_t seed, uint32_t t1, uint32_t t2, int threads) {
    int64_t tiles = (n + TILE - 1) / TILE;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        uint32_t r[4][LANES];
        philox_tile((uint64_t)t, seed, r);
        const uint32_t *w = &r[0][0];
        int64_t base = t * TILE, len = n - base < TILE ? n - base : TILE;
        for (int64_t j = 0; j < len; j++)
            out[base + j] = (uint8_t)(((w[j] & 0xFFFFu) < t1) | (((w[j] >> 16) < t2) << 1));
    }
}
