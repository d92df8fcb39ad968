/* heatbath native kernels: counter-based Gaussian noise fused with the Langevin updates.
 *
 * The numbers are, bit for bit, those of the tensor-op reference in heatbath/optim/_philox.py
 * (Philox4x32-10 keyed by (seed, step, block), Box-Muller from the top 24 bits of each word,
 * with ln, sin, cos and sqrt evaluated by the same sequence of IEEE float32 +, -, *, /):
 * integer arithmetic is exact, and every floating-point operation below is the same
 * correctly rounded operation in the same order. Build with -ffp-contract=off (no FMA
 * contraction) and without -ffast-math. See docs/how-to/noise.md for the layout of the stream.
 *
 * The element with global index g at step t under key k is lane g % 4 of Philox block g / 4;
 * a kernel call covers elements [0, n) of a buffer whose element 0 has global index `off`,
 * so a tensor split into pieces (threads, FSDP shards) gets the numbers of the whole.
 *
 * Every kernel is single-threaded; the Python side (heatbath/optim/_native.py) splits large
 * tensors across threads, calling these with the GIL released.
 */
#include <stdint.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

/* the vector pieces must be inlined into each kernel's loop for the noise to stay in
 * registers */
#define HB_INLINE static inline __attribute__((always_inline))

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* constants exactly as the reference rounds its Python floats to float32 */
#define F_SQRT2 ((float)1.4142135623730951)
#define F_LN2_HI ((float)0.693145751953125)
#define F_LN2_LO ((float)1.428606820309417232e-06)
#define F_PHI_UNIT ((float)(3.141592653589793 / 16777216.0))
#define F_L3 ((float)(2.0 / 3.0))
#define F_L5 ((float)(2.0 / 5.0))
#define F_L7 ((float)(2.0 / 7.0))
#define F_L9 ((float)(2.0 / 9.0))
#define F_S3 ((float)(-1.0 / 6.0))
#define F_S5 ((float)(1.0 / 120.0))
#define F_S7 ((float)(-1.0 / 5040.0))
#define F_S9 ((float)(1.0 / 362880.0))
#define F_C4 ((float)(1.0 / 24.0))
#define F_C6 ((float)(-1.0 / 720.0))
#define F_C8 ((float)(1.0 / 40320.0))
#define F_C10 ((float)(-1.0 / 3628800.0))

typedef struct {
    uint32_t k0, k1, t0, t1;
} hb_keys;

static hb_keys make_keys(uint64_t key, uint64_t step) {
    hb_keys K;
    K.k0 = (uint32_t)key;
    K.k1 = (uint32_t)(key >> 32);
    K.t0 = (uint32_t)step;
    K.t1 = (uint32_t)(step >> 32);
    return K;
}

static inline uint32_t f2u(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float u2f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---------------------------------------------------------------- scalar reference pieces */
static inline float neg2log_s(uint32_t a) {
    float f = (float)(int32_t)(a | 1u);
    uint32_t bits = f2u(f);
    int32_t e = (int32_t)(bits >> 23) - 127;
    float m = u2f((bits & 0x7FFFFFu) | 0x3F800000u);
    if (m > F_SQRT2) {
        m = m * 0.5f;
        e = e + 1;
    }
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float ln_m = s * (2.0f + s2 * (F_L3 + s2 * (F_L5 + s2 * (F_L7 + s2 * F_L9))));
    float ef = (float)(e - 24);
    return -2.0f * (ef * F_LN2_HI + (ef * F_LN2_LO + ln_m));
}

static inline float sqrt_heron_s(float y) {
    float s = u2f((uint32_t)(((int32_t)f2u(y) >> 1) + 0x1FBD1DF5));
    for (int i = 0; i < 3; i++) s = 0.5f * (s + y / s);
    return s;
}

static inline void cos_sin_s(uint32_t a, float *c, float *s) {
    uint32_t a2 = (a + (1u << 21)) & ((1u << 24) - 1u);
    uint32_t q = a2 >> 22;
    int32_t r = (int32_t)(a2 & ((1u << 22) - 1u)) - (1 << 21);
    float phi = (float)(2 * r + 1) * F_PHI_UNIT;
    float p2 = phi * phi;
    float sin_p = phi + phi * p2 * (F_S3 + p2 * (F_S5 + p2 * (F_S7 + p2 * F_S9)));
    float cos_p = 1.0f + p2 * (-0.5f + p2 * (F_C4 + p2 * (F_C6 + p2 * (F_C8 + p2 * F_C10))));
    float cc = (q & 1u) ? sin_p : cos_p;
    float ss = (q & 1u) ? cos_p : sin_p;
    if (((q + 1u) & 2u) == 2u) cc = -cc;
    if ((q & 2u) == 2u) ss = -ss;
    *c = cc;
    *s = ss;
}

static inline void mulhilo_s(uint32_t m, uint32_t x, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)m * (uint64_t)x;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

/* Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1) */
static void philox_words(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                         uint32_t k1, uint32_t w[4]) {
    uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo_s(PHILOX_M0, x0, &hi0, &lo0);
        mulhilo_s(PHILOX_M1, x2, &hi1, &lo1);
        uint32_t y0 = hi1 ^ x1 ^ k0, y2 = hi0 ^ x3 ^ k1;
        x0 = y0;
        x1 = lo1;
        x2 = y2;
        x3 = lo0;
    }
    w[0] = x0;
    w[1] = x1;
    w[2] = x2;
    w[3] = x3;
}

/* the four normals of Philox block b */
static void block4_s(const hb_keys *K, uint64_t b, float z[4]) {
    uint32_t w[4];
    philox_words((uint32_t)b, (uint32_t)(b >> 32), K->t0, K->t1, K->k0, K->k1, w);
    uint32_t x0 = w[0], x1 = w[1], x2 = w[2], x3 = w[3];
    float rho0 = sqrt_heron_s(neg2log_s(x0 >> 8));
    float rho2 = sqrt_heron_s(neg2log_s(x2 >> 8));
    float c1, s1, c3, s3;
    cos_sin_s(x1 >> 8, &c1, &s1);
    cos_sin_s(x3 >> 8, &c3, &s3);
    z[0] = rho0 * c1;
    z[1] = rho0 * s1;
    z[2] = rho2 * c3;
    z[3] = rho2 * s3;
}

/* normals of the 32-element group (8 blocks) holding global index g, kept between calls:
 * the head and tail of a buffer (before its first and after its last whole group) take their
 * normals from here, computed eight blocks at a time like the rest */
typedef struct {
    uint64_t base;
    float z[32];
} hb_cache;

static void group32(const hb_keys *K, uint64_t base, float z[32]);

static inline float znorm(const hb_keys *K, hb_cache *C, uint64_t g) {
    uint64_t base = g & ~(uint64_t)31;
    if (base != C->base) {
        group32(K, base, C->z);
        C->base = base;
    }
    return C->z[g & 31u];
}

/* ------------------------------------------------------------------- AVX2: 8 blocks at once */
#ifdef __AVX2__
HB_INLINE void mulhilo8(__m256i x, __m256i m, __m256i *hi, __m256i *lo) {
    __m256i pe = _mm256_mul_epu32(x, m);
    __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

HB_INLINE __m256 neg2log8(__m256i a) {
    __m256 f = _mm256_cvtepi32_ps(_mm256_or_si256(a, _mm256_set1_epi32(1)));
    __m256i bits = _mm256_castps_si256(f);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFF)), _mm256_set1_epi32(0x3F800000)));
    __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(F_SQRT2), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big)); /* mask is -1 where big */
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
    __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_mul_ps(s2, _mm256_set1_ps(F_L9));
    p = _mm256_mul_ps(s2, _mm256_add_ps(_mm256_set1_ps(F_L7), p));
    p = _mm256_mul_ps(s2, _mm256_add_ps(_mm256_set1_ps(F_L5), p));
    p = _mm256_mul_ps(s2, _mm256_add_ps(_mm256_set1_ps(F_L3), p));
    __m256 ln_m = _mm256_mul_ps(s, _mm256_add_ps(_mm256_set1_ps(2.0f), p));
    __m256 ef = _mm256_cvtepi32_ps(_mm256_sub_epi32(e, _mm256_set1_epi32(24)));
    __m256 t = _mm256_add_ps(_mm256_mul_ps(ef, _mm256_set1_ps(F_LN2_LO)), ln_m);
    t = _mm256_add_ps(_mm256_mul_ps(ef, _mm256_set1_ps(F_LN2_HI)), t);
    return _mm256_mul_ps(_mm256_set1_ps(-2.0f), t);
}

HB_INLINE __m256 sqrt_heron8(__m256 y) {
    __m256 s = _mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_srai_epi32(_mm256_castps_si256(y), 1), _mm256_set1_epi32(0x1FBD1DF5)));
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int i = 0; i < 3; i++) s = _mm256_mul_ps(half, _mm256_add_ps(s, _mm256_div_ps(y, s)));
    return s;
}

HB_INLINE void cos_sin8(__m256i a, __m256 *c, __m256 *s) {
    __m256i a2 = _mm256_and_si256(_mm256_add_epi32(a, _mm256_set1_epi32(1 << 21)),
                                  _mm256_set1_epi32((1 << 24) - 1));
    __m256i q = _mm256_srli_epi32(a2, 22);
    __m256i r = _mm256_sub_epi32(_mm256_and_si256(a2, _mm256_set1_epi32((1 << 22) - 1)),
                                 _mm256_set1_epi32(1 << 21));
    __m256i k = _mm256_add_epi32(_mm256_add_epi32(r, r), _mm256_set1_epi32(1));
    __m256 phi = _mm256_mul_ps(_mm256_cvtepi32_ps(k), _mm256_set1_ps(F_PHI_UNIT));
    __m256 p2 = _mm256_mul_ps(phi, phi);
    __m256 ps = _mm256_mul_ps(p2, _mm256_set1_ps(F_S9));
    ps = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(F_S7), ps));
    ps = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(F_S5), ps));
    ps = _mm256_add_ps(_mm256_set1_ps(F_S3), ps);
    __m256 sin_p = _mm256_add_ps(phi, _mm256_mul_ps(_mm256_mul_ps(phi, p2), ps));
    __m256 pc = _mm256_mul_ps(p2, _mm256_set1_ps(F_C10));
    pc = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(F_C8), pc));
    pc = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(F_C6), pc));
    pc = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(F_C4), pc));
    pc = _mm256_mul_ps(p2, _mm256_add_ps(_mm256_set1_ps(-0.5f), pc));
    __m256 cos_p = _mm256_add_ps(_mm256_set1_ps(1.0f), pc);
    const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
    __m256 odd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, one), one));
    __m256 cc = _mm256_blendv_ps(cos_p, sin_p, odd);
    __m256 ss = _mm256_blendv_ps(sin_p, cos_p, odd);
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    __m256 negc = _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_add_epi32(q, one), two), two));
    __m256 negs = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, two), two));
    *c = _mm256_xor_ps(cc, _mm256_and_ps(negc, sign));
    *s = _mm256_xor_ps(ss, _mm256_and_ps(negs, sign));
}

/* lanes (Z0[j], Z1[j], Z2[j], Z3[j]) are elements 4j .. 4j+3: z[v] = elements 8v .. 8v+7 */
HB_INLINE void transpose_out(__m256 Z0, __m256 Z1, __m256 Z2, __m256 Z3, __m256 z[4]) {
    __m256 t0 = _mm256_unpacklo_ps(Z0, Z1), t1 = _mm256_unpackhi_ps(Z0, Z1);
    __m256 t2 = _mm256_unpacklo_ps(Z2, Z3), t3 = _mm256_unpackhi_ps(Z2, Z3);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    z[0] = _mm256_permute2f128_ps(u0, u1, 0x20);
    z[1] = _mm256_permute2f128_ps(u2, u3, 0x20);
    z[2] = _mm256_permute2f128_ps(u0, u1, 0x31);
    z[3] = _mm256_permute2f128_ps(u2, u3, 0x31);
}

/* the counter words of 8 consecutive blocks b .. b+7 (no wrap of the low word inside) */
typedef struct {
    __m256i x0, x1, x2, x3;
} ph8;

HB_INLINE ph8 ph8_counters(const hb_keys *K, uint64_t b) {
    ph8 X;
    X.x0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    X.x1 = _mm256_set1_epi32((int)(uint32_t)(b >> 32));
    X.x2 = _mm256_set1_epi32((int)K->t0);
    X.x3 = _mm256_set1_epi32((int)K->t1);
    return X;
}

/* the 32 U normals of blocks b .. b + 8U - 1 (U = 1 or 2; b a multiple of 8, and the low
 * counter word does not wrap inside them), in element order: z[v] holds elements
 * 4b + 8v .. 4b + 8v + 7. With U = 2 each stage runs on both groups of 8 blocks before the
 * next, so that one group's long dependency chains (ten Philox rounds, then the divisions of
 * ln and sqrt) overlap the other's: about 20 % faster than one group after the other. */
HB_INLINE void noise_groups(const hb_keys *K, uint64_t b, int U, __m256 *z) {
    ph8 X[2];
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) X[u] = ph8_counters(K, b + 8 * (uint64_t)u);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    uint32_t k0 = K->k0, k1 = K->k1;
    for (int r = 0; r < 10; r++) { /* the rounds of heatbath/optim/_philox.py, 8 blocks a lane */
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        const __m256i vk0 = _mm256_set1_epi32((int)k0), vk1 = _mm256_set1_epi32((int)k1);
        __m256i hi0[2], lo0[2], hi1[2], lo1[2];
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) mulhilo8(X[u].x0, m0, &hi0[u], &lo0[u]);
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) mulhilo8(X[u].x2, m1, &hi1[u], &lo1[u]);
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) {
            X[u].x0 = _mm256_xor_si256(_mm256_xor_si256(hi1[u], X[u].x1), vk0);
            X[u].x1 = lo1[u];
            X[u].x2 = _mm256_xor_si256(_mm256_xor_si256(hi0[u], X[u].x3), vk1);
            X[u].x3 = lo0[u];
        }
    }
    __m256 rho0[2], rho2[2], c1[2], s1[2], c3[2], s3[2];
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) rho0[u] = neg2log8(_mm256_srli_epi32(X[u].x0, 8));
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) rho2[u] = neg2log8(_mm256_srli_epi32(X[u].x2, 8));
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) rho0[u] = sqrt_heron8(rho0[u]);
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) rho2[u] = sqrt_heron8(rho2[u]);
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) cos_sin8(_mm256_srli_epi32(X[u].x1, 8), &c1[u], &s1[u]);
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) cos_sin8(_mm256_srli_epi32(X[u].x3, 8), &c3[u], &s3[u]);
#pragma GCC unroll 2
    for (int u = 0; u < U; u++)
        transpose_out(_mm256_mul_ps(rho0[u], c1[u]), _mm256_mul_ps(rho0[u], s1[u]),
                      _mm256_mul_ps(rho2[u], c3[u]), _mm256_mul_ps(rho2[u], s3[u]), z + 4 * u);
}

/* the 32 normals of blocks b .. b+7, b a multiple of 8 */
HB_INLINE void noise32(const hb_keys *K, uint64_t b, __m256 z[4]) { noise_groups(K, b, 1, z); }

/* the 64 normals of blocks b .. b+15, b a multiple of 8 */
HB_INLINE void noise64(const hb_keys *K, uint64_t b, __m256 z[8]) {
    if ((uint32_t)b > 0xFFFFFFEFu) { /* the low counter word wraps between the two groups */
        noise_groups(K, b, 1, z);
        noise_groups(K, b + 8, 1, z + 4);
        return;
    }
    noise_groups(K, b, 2, z);
}

/* the normals of the next 64 elements (or 32, when fewer than 64 remain) from the 32-aligned
 * global index g; returns the number of 8-float vectors written */
static inline int noise_next(const hb_keys *K, uint64_t g, int64_t left, __m256 z[8]) {
    if (left >= 64) {
        noise64(K, g >> 2, z);
        return 8;
    }
    noise32(K, g >> 2, z);
    return 4;
}
#endif

static void group32(const hb_keys *K, uint64_t base, float z[32]) {
#ifdef __AVX2__
    __m256 v[4];
    noise32(K, base >> 2, v);
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(z + 8 * j, v[j]);
#else
    for (int j = 0; j < 8; j++) block4_s(K, (base >> 2) + (uint64_t)j, z + 4 * j);
#endif
}

/* Elements before the first 32-aligned global index (and after the last full group of 32)
 * take the scalar path; the middle goes 32 at a time. */
static inline int64_t head_len(uint64_t off, int64_t n) {
#ifdef __AVX2__
    int64_t h = (int64_t)((32u - (off & 31u)) & 31u);
    return h < n ? h : n;
#else
    (void)off;
    return n;
#endif
}

/* ------------------------------------------------------------------------------ kernels */
int hb_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

/* out[i] = std * Z(key, step, off + i) (std = 1 gives the plain stream) */
void hb_normals(float *out, int64_t n, uint64_t key, uint64_t step, uint64_t off, float std) {
    hb_keys K = make_keys(key, step);
    hb_cache C = {1, {0}};  /* base 1: no group yet (bases are multiples of 32) */
    int64_t i = 0, h = head_len(off, n);
    for (; i < h; i++) out[i] = std * znorm(&K, &C, off + (uint64_t)i);
#ifdef __AVX2__
    const __m256 vs = _mm256_set1_ps(std);
    for (int nv; i + 32 <= n; i += 8 * nv) {
        __m256 z[8];
        nv = noise_next(&K, off + (uint64_t)i, n - i, z);
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + i + 8 * v, _mm256_mul_ps(vs, z[v]));
    }
#endif
    for (; i < n; i++) out[i] = std * znorm(&K, &C, off + (uint64_t)i);
}

/* 1 when some g[i] is NaN or infinite */
int hb_nonfinite(const float *g, int64_t n) {
    const uint32_t *u = (const uint32_t *)g;
    uint32_t bad = 0;
    int64_t i = 0;
    for (; i + 1024 <= n; i += 1024) {
        for (int j = 0; j < 1024; j++) bad |= ((u[i + j] & 0x7F800000u) == 0x7F800000u);
        if (bad) return 1;
    }
    for (; i < n; i++) bad |= ((u[i] & 0x7F800000u) == 0x7F800000u);
    return bad ? 1 : 0;
}

/* SGLD: theta += (std * Z - h * g) */
void hb_sgld(float *th, const float *gr, int64_t n, uint64_t key, uint64_t step, uint64_t off,
             float h, float std) {
    hb_keys K = make_keys(key, step);
    hb_cache C = {1, {0}};  /* base 1: no group yet (bases are multiples of 32) */
    int64_t i = 0, hd = head_len(off, n);
#define SGLD_S(i)                                                   \
    do {                                                            \
        float z = znorm(&K, &C, off + (uint64_t)(i));               \
        th[i] = th[i] + (std * z - h * gr[i]);                      \
    } while (0)
    for (; i < hd; i++) SGLD_S(i);
#ifdef __AVX2__
    const __m256 vh = _mm256_set1_ps(h), vs = _mm256_set1_ps(std);
    for (int nv; i + 32 <= n; i += 8 * nv) {
        __m256 z[8];
        nv = noise_next(&K, off + (uint64_t)i, n - i, z);
        for (int v = 0; v < nv; v++) {
            int64_t e = i + 8 * v;
            __m256 t = _mm256_sub_ps(_mm256_mul_ps(vs, z[v]),
                                     _mm256_mul_ps(vh, _mm256_loadu_ps(gr + e)));
            _mm256_storeu_ps(th + e, _mm256_add_ps(_mm256_loadu_ps(th + e), t));
        }
    }
#endif
    for (; i < n; i++) SGLD_S(i);
#undef SGLD_S
}

/* merged-kick BAOAB: p += kick g; theta += hh p; p = c p + d Z; theta += hh p */
void hb_baoab(float *th, float *mo, const float *gr, int64_t n, uint64_t key, uint64_t step,
              uint64_t off, float kick, float hh, float c, float d) {
    hb_keys K = make_keys(key, step);
    hb_cache C = {1, {0}};  /* base 1: no group yet (bases are multiples of 32) */
    int64_t i = 0, hd = head_len(off, n);
#define BAOAB_S(i)                                                  \
    do {                                                            \
        float z = znorm(&K, &C, off + (uint64_t)(i));               \
        float p = mo[i] + kick * gr[i];                             \
        float t = th[i] + hh * p;                                   \
        p = p * c + d * z;                                          \
        th[i] = t + hh * p;                                         \
        mo[i] = p;                                                  \
    } while (0)
    for (; i < hd; i++) BAOAB_S(i);
#ifdef __AVX2__
    const __m256 vk = _mm256_set1_ps(kick), vhh = _mm256_set1_ps(hh);
    const __m256 vc = _mm256_set1_ps(c), vd = _mm256_set1_ps(d);
    for (int nv; i + 32 <= n; i += 8 * nv) {
        __m256 z[8];
        nv = noise_next(&K, off + (uint64_t)i, n - i, z);
        for (int v = 0; v < nv; v++) {
            int64_t e = i + 8 * v;
            __m256 p = _mm256_add_ps(_mm256_loadu_ps(mo + e),
                                     _mm256_mul_ps(vk, _mm256_loadu_ps(gr + e)));
            __m256 t = _mm256_add_ps(_mm256_loadu_ps(th + e), _mm256_mul_ps(vhh, p));
            p = _mm256_add_ps(_mm256_mul_ps(p, vc), _mm256_mul_ps(vd, z[v]));
            _mm256_storeu_ps(th + e, _mm256_add_ps(t, _mm256_mul_ps(vhh, p)));
            _mm256_storeu_ps(mo + e, p);
        }
    }
#endif
    for (; i < n; i++) BAOAB_S(i);
#undef BAOAB_S
}

/* Adaptive Langevin up to E on one replica's row: p += kick g; theta += hh p; p *= f;
 * a = p + cz Z; p += s2 Z; returns sum a^2 (accumulated in double) */
double hb_adl1(float *th, float *mo, const float *gr, int64_t n, uint64_t key, uint64_t step,
               uint64_t off, float kick, float hh, float f, float cz, float s2) {
    hb_keys K = make_keys(key, step);
    hb_cache C = {1, {0}};  /* base 1: no group yet (bases are multiples of 32) */
    double kin = 0.0;
    int64_t i = 0, hd = head_len(off, n);
#define ADL1_S(i)                                                   \
    do {                                                            \
        float z = znorm(&K, &C, off + (uint64_t)(i));               \
        float p = mo[i] + kick * gr[i];                             \
        th[i] = th[i] + hh * p;                                     \
        p = p * f;                                                  \
        float a = p + cz * z;                                       \
        kin += (double)(a * a);                                     \
        mo[i] = p + s2 * z;                                         \
    } while (0)
    for (; i < hd; i++) ADL1_S(i);
#ifdef __AVX2__
    const __m256 vk = _mm256_set1_ps(kick), vhh = _mm256_set1_ps(hh), vf = _mm256_set1_ps(f);
    const __m256 vcz = _mm256_set1_ps(cz), vs2 = _mm256_set1_ps(s2);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    for (int nv; i + 32 <= n; i += 8 * nv) {
        __m256 z[8];
        nv = noise_next(&K, off + (uint64_t)i, n - i, z);
        for (int v = 0; v < nv; v++) {
            int64_t e = i + 8 * v;
            __m256 p = _mm256_add_ps(_mm256_loadu_ps(mo + e),
                                     _mm256_mul_ps(vk, _mm256_loadu_ps(gr + e)));
            _mm256_storeu_ps(th + e, _mm256_add_ps(_mm256_loadu_ps(th + e),
                                                   _mm256_mul_ps(vhh, p)));
            p = _mm256_mul_ps(p, vf);
            __m256 a = _mm256_add_ps(p, _mm256_mul_ps(vcz, z[v]));
            __m256 a2 = _mm256_mul_ps(a, a);
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(a2)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(a2, 1)));
            _mm256_storeu_ps(mo + e, _mm256_add_ps(p, _mm256_mul_ps(vs2, z[v])));
        }
    }
    double tmp[4];
    _mm256_storeu_pd(tmp, _mm256_add_pd(acc0, acc1));
    kin += (tmp[0] + tmp[1]) + (tmp[2] + tmp[3]);
#endif
    for (; i < n; i++) ADL1_S(i);
#undef ADL1_S
    return kin;
}

/* Adaptive Langevin after E: p *= f; theta += hh p */
void hb_adl2(float *th, float *mo, int64_t n, float f, float hh) {
    for (int64_t i = 0; i < n; i++) {
        float p = mo[i] * f;
        th[i] = th[i] + hh * p;
        mo[i] = p;
    }
}

/* ------------------------------------------------------- several tensors in one call (small) */
/* Pointer arrays hold addresses as int64; key, off per tensor. */
int hb_nonfinite_multi(int64_t k, const int64_t *g, const int64_t *n) {
    for (int64_t j = 0; j < k; j++)
        if (hb_nonfinite((const float *)(intptr_t)g[j], n[j])) return 1;
    return 0;
}

/* check != 0: first look at every gradient of the call and return 1, changing nothing, if
 * one holds a NaN or an inf; otherwise update and return 0 */
int hb_sgld_multi(int64_t k, const int64_t *th, const int64_t *g, const int64_t *n,
                  const uint64_t *key, const uint64_t *off, uint64_t step, float h, float std,
                  int check) {
    if (check && hb_nonfinite_multi(k, g, n)) return 1;
    for (int64_t j = 0; j < k; j++)
        hb_sgld((float *)(intptr_t)th[j], (const float *)(intptr_t)g[j], n[j], key[j], step,
                off[j], h, std);
    return 0;
}

int hb_baoab_multi(int64_t k, const int64_t *th, const int64_t *mo, const int64_t *g,
                   const int64_t *n, const uint64_t *key, const uint64_t *off, uint64_t step,
                   float kick, float hh, float c, float d, int check) {
    if (check && hb_nonfinite_multi(k, g, n)) return 1;
    for (int64_t j = 0; j < k; j++)
        hb_baoab((float *)(intptr_t)th[j], (float *)(intptr_t)mo[j],
                 (const float *)(intptr_t)g[j], n[j], key[j], step, off[j], kick, hh, c, d);
    return 0;
}

/* --------------------------------------- Adaptive Langevin's kinetic-energy draw (float64) */
/* The same computation as heatbath.optim._philox.adl_kinetic_draw, operation for operation,
 * with the same libm functions Python's math module calls (compiled with -fno-builtin-pow,
 * -sin, -cos, -log so that the compiler does not substitute its own expansions), so both
 * return the same double. */
#include <math.h>

static inline double unit64(uint32_t w) { return ((double)w + 0.5) * 2.3283064365386963e-10; }

double hb_adl_kinetic_draw(uint64_t key, uint64_t step, uint64_t replica, int64_t n, double a2,
                           double c) {
    if (c == 0.0) return a2;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    uint32_t t0 = (uint32_t)step, t1 = (uint32_t)(step >> 32);
    double alpha = 0.5 * (double)(n - 1);
    int boost = alpha < 1.0;
    double d = (boost ? alpha + 1.0 : alpha) - 1.0 / 3.0;
    double cc = 1.0 / sqrt(9.0 * d);
    uint64_t j = 0;
    int have_first = 0;
    double x_first = 0.0, gamma = 0.0;
    for (;;) {
        uint32_t w[4];
        philox_words((uint32_t)j, (uint32_t)(0xF0000000u + (uint32_t)replica), t0, t1, k0, k1, w);
        j++;
        double rad = sqrt(-2.0 * log(unit64(w[0])));
        double ang = 2.0 * 3.141592653589793 * unit64(w[1]);
        if (!have_first) {
            x_first = rad * cos(ang);
            have_first = 1;
        }
        if (alpha <= 0.0) break;
        double x = rad * sin(ang);
        double v = pow(1.0 + cc * x, 3.0);
        if (v <= 0.0) continue;
        if (log(unit64(w[2])) < 0.5 * x * x + d - d * v + d * log(v)) {
            gamma = d * v;
            if (boost) gamma *= pow(unit64(w[3]), 1.0 / alpha);
            break;
        }
    }
    return pow(sqrt(a2) + c * x_first, 2.0) + c * c * 2.0 * gamma;
}

/* ---------------------------------------------- Adaptive Langevin's thermostat (native path) */
/* out[i] = exp(xi[i] * mhh): the friction factor e^{-xi h/2} (mhh = -h/2), in float32 */
void hb_adl_factors(const float *xi, int64_t m, float mhh, float *out) {
    for (int64_t i = 0; i < m; i++) out[i] = expf(xi[i] * mhh);
}

/* E: xi[r, s] <- (xi[r, s] + e_a[s] * (float)draw[r, s]) - e_b[s] */
void hb_adl_xi(float *xi, int64_t R, int64_t S, const float *e_a, const float *e_b,
               const double *draw) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++) {
            int64_t i = r * S + s;
            xi[i] = (xi[i] + e_a[s] * (float)draw[i]) - e_b[s];
        }
}

/* One whole Adaptive Langevin step of a group (one replica, every tensor in one thread):
 * the merged kick, A, C, D (one draw), E with the exact kinetic-energy draw, C, A. Segment
 * seg[j] of tensor j owns xi[seg[j]]; seg_key/seg_n are each segment's Philox key and size.
 * The same operations in the same order as the general native path (heatbath/optim/_core.py),
 * so both give the same numbers. Returns 1, changing nothing, if check and a gradient is not
 * finite. */
int hb_adl_group(int64_t k, const int64_t *th, const int64_t *mo, const int64_t *g,
                 const int64_t *n, const uint64_t *key, const uint64_t *off, const int64_t *seg,
                 int64_t S, const uint64_t *seg_key, const int64_t *seg_n, float *xi,
                 const float *e_a, const float *e_b, uint64_t step, float kick, float hh,
                 float mhh, float cz, float s2, double czd, int check) {
    if (check && hb_nonfinite_multi(k, g, n)) return 1;
    float f[64];
    double a2[64], draw[64];
    if (S > 64) return 2; /* the caller keeps groups with more segments on the general path */
    hb_adl_factors(xi, S, mhh, f);
    for (int64_t s = 0; s < S; s++) a2[s] = 0.0;
    for (int64_t j = 0; j < k; j++)
        a2[seg[j]] += hb_adl1((float *)(intptr_t)th[j], (float *)(intptr_t)mo[j],
                              (const float *)(intptr_t)g[j], n[j], key[j], step, off[j], kick, hh,
                              f[seg[j]], cz, s2);
    for (int64_t s = 0; s < S; s++)
        draw[s] = hb_adl_kinetic_draw(seg_key[s], step, 0, seg_n[s], a2[s], czd);
    hb_adl_xi(xi, 1, S, e_a, e_b, draw);
    hb_adl_factors(xi, S, mhh, f);
    for (int64_t j = 0; j < k; j++)
        hb_adl2((float *)(intptr_t)th[j], (float *)(intptr_t)mo[j], n[j], f[seg[j]], hh);
    return 0;
}

/* ------------------------------------------------------------ a whole optimizer step, planned */
/* One group of a planned step (heatbath/optim/_fast.py fills these once; the pointer arrays
 * are rewritten in place when the tensors move). method: 0 SGLD (c0 = h, c1 = std), 1 BAOAB
 * (c0..c3 = kick, h/2, c, d), 2 Adaptive Langevin (c0, c1 = kick, h/2; the adl_* fields). */
typedef struct {
    int64_t method, k;
    const int64_t *th, *mo, *g, *n;
    const uint64_t *key, *off;
    float c0, c1, c2, c3;
    const int64_t *seg;
    int64_t S;
    const uint64_t *seg_key;
    const int64_t *seg_n;
    float *xi;
    const float *e_a, *e_b;
    float mhh, cz, s2;
    double czd;
} hb_group_plan;

/* Every gradient of every group is checked first (when check): 1 is returned, and nothing
 * changed, if one is not finite. Then each group takes its step. */
int hb_plan_step(const hb_group_plan *P, int64_t ngroups, uint64_t step, int check) {
    if (check)
        for (int64_t i = 0; i < ngroups; i++)
            if (hb_nonfinite_multi(P[i].k, P[i].g, P[i].n)) return 1;
    for (int64_t i = 0; i < ngroups; i++) {
        const hb_group_plan *G = P + i;
        if (G->method == 0)
            hb_sgld_multi(G->k, G->th, G->g, G->n, G->key, G->off, step, G->c0, G->c1, 0);
        else if (G->method == 1)
            hb_baoab_multi(G->k, G->th, G->mo, G->g, G->n, G->key, G->off, step, G->c0, G->c1,
                           G->c2, G->c3, 0);
        else
            hb_adl_group(G->k, G->th, G->mo, G->g, G->n, G->key, G->off, G->seg, G->S,
                         G->seg_key, G->seg_n, G->xi, G->e_a, G->e_b, step, G->c0, G->c1,
                         G->mhh, G->cz, G->s2, G->czd, 0);
    }
    return 0;
}

/* ------------------------------------------------- ensembles: every replica row in one call */
/* rows r of a [R, m] tensor (pointers to row 0; row r's global offset is off + r m), with
 * row factors f[r]; kin[r] = sum of a^2 over row r */
void hb_adl1_rows(float *th, float *mo, const float *gr, int64_t R, int64_t m, uint64_t key,
                  uint64_t step, uint64_t off, float kick, float hh, const float *f, float cz,
                  float s2, double *kin) {
    for (int64_t r = 0; r < R; r++)
        kin[r] = hb_adl1(th + r * m, mo + r * m, gr + r * m, m, key, step, off + (uint64_t)(r * m),
                         kick, hh, f[r], cz, s2);
}

void hb_adl2_rows(float *th, float *mo, int64_t R, int64_t m, const float *f, float hh) {
    for (int64_t r = 0; r < R; r++) hb_adl2(th + r * m, mo + r * m, m, f[r], hh);
}

/* draw[r, s] = hb_adl_kinetic_draw(seg_key[s], step, r, seg_n[s], a2[r, s], c) */
void hb_adl_draws(int64_t R, int64_t S, const uint64_t *seg_key, const int64_t *seg_n,
                  uint64_t step, const double *a2, double c, double *draw) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++)
            draw[r * S + s] = hb_adl_kinetic_draw(seg_key[s], step, (uint64_t)r, seg_n[s],
                                                  a2[r * S + s], c);
}
