// Writes what llama.cpp's aarch64 CPU backend computes on a fixed set of inputs, so that
// crates/kernels/tests/ggml_arm_q8.rs can require our aarch64 kernels to agree with it.
//
// Built by scripts/test-aarch64.sh against llama.cpp's own sources, taken at test time from the
// llama-cpp-sys-2 crate that the `llamacpp` feature already depends on (nothing of llama.cpp
// is in this repository): ggml-cpu/arch/arm/quants.c (the NEON `quantize_row_q8_0/q8_1` and
// `ggml_vec_dot_*`) and ggml-quants.c (the reference weight quantizers and `q8_K`). Run under
// qemu-aarch64. This file is ours: it only calls those functions and writes their results.
//
// Output (little endian), read by the Rust test:
//   "RBGGARM1", u32 n,
//   n f32 activations x, n f32 weights w,
//   q8_0 blocks of x (n/32 x 34 bytes), q8_1 blocks (n/32 x 36), q8_K blocks (n/256 x 292),
//   u32 number of weight types, then per type: u32 ggml type id, u32 byte count, the weight
//   row w quantized by ggml's reference quantizer, f32 ggml vec_dot(row, x in vec_dot_type).
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*quantize_fn)(const float *x, void *y, int64_t k);
typedef void (*vec_dot_fn)(int n, float *s, size_t bs, const void *vx, size_t bx,
                           const void *vy, size_t by, int nrc);

// ggml-cpu (arch/arm/quants.c)
void quantize_row_q8_0(const float *x, void *y, int64_t k);
void quantize_row_q8_1(const float *x, void *y, int64_t k);
void quantize_row_q8_K(const float *x, void *y, int64_t k);
void ggml_vec_dot_q8_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q4_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q4_1_q8_1(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q5_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q5_1_q8_1(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q4_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q5_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q6_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
// ggml (ggml-quants.c)
void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);

// What the two object files reference from the rest of ggml; none of it is reached here.
float ggml_table_f32_ue4m3[1 << 8];
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; abort(); }
size_t ggml_type_size(int type) { (void)type; abort(); }
const char *ggml_type_name(int type) { (void)type; return "?"; }

enum { N = 1024 };

static uint64_t state = 0x2545f4914f6cdd1dull;
static float rand_pm1(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (float)(state >> 40) / (float)(1ull << 24) * 2.0f - 1.0f;
}

static void put(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) {
        perror("write");
        exit(1);
    }
}
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <output file>\n", argv[0]);
        return 2;
    }
    static float x[N], w[N];
    for (int i = 0; i < N; i++) x[i] = rand_pm1() * 3.0f;
    // Blocks of a q4_0 embedding row after RMSNorm, `c k` with k in -8..=7: x * 127 / amax
    // lands on exact .5 ties, where the rounding rule and the multiplier's last bit decide.
    for (int b = 0; b < 8; b++)
        for (int i = 0; i < 32; i++)
            x[b * 32 + i] = 0.0123f * (1.0f + b * 0.37f) * (float)(i % 16 - 8);
    // amax 127: scale exactly 1, so x = k + 0.5 are ties.
    for (int i = 0; i < 32; i++) x[256 + i] = i == 0 ? 127.0f : (float)i - 15.5f;
    for (int i = 288; i < 320; i++) x[i] = 0.0f;
    for (int i = 320; i < 352; i++) x[i] *= 1e-9f;
    for (int i = 352; i < 384; i++) x[i] *= 1e4f;
    // amax 3 (not a power of two): 127 / 3 and 1 / (3 / 127) differ in the last bit.
    for (int b = 12; b < 20; b++) {
        x[b * 32] = 3.0f;
        for (int i = 1; i < 32; i++) x[b * 32 + i] = (float)(i - 16) * (3.0f / 127.0f) * 1.5f;
    }
    for (int i = 0; i < N; i++) w[i] = rand_pm1();

    static uint8_t q80[N / 32 * 34], q81[N / 32 * 36], q8k[N / 256 * 292];
    quantize_row_q8_0(x, q80, N);
    quantize_row_q8_1(x, q81, N);
    quantize_row_q8_K(x, q8k, N);

    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    put(f, "RBGGARM1", 8);
    put_u32(f, N);
    put(f, x, sizeof x);
    put(f, w, sizeof w);
    put(f, q80, sizeof q80);
    put(f, q81, sizeof q81);
    put(f, q8k, sizeof q8k);

    // ggml_type ids (ggml.h): Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14.
    struct {
        uint32_t id;
        uint32_t block, bytes;
        quantize_fn quantize;
        vec_dot_fn dot;
        const void *act;
    } types[] = {
        {8, 32, 34, quantize_row_q8_0_ref, ggml_vec_dot_q8_0_q8_0, q80},
        {2, 32, 18, quantize_row_q4_0_ref, ggml_vec_dot_q4_0_q8_0, q80},
        {3, 32, 20, quantize_row_q4_1_ref, ggml_vec_dot_q4_1_q8_1, q81},
        {6, 32, 22, quantize_row_q5_0_ref, ggml_vec_dot_q5_0_q8_0, q80},
        {7, 32, 24, quantize_row_q5_1_ref, ggml_vec_dot_q5_1_q8_1, q81},
        {12, 256, 144, quantize_row_q4_K_ref, ggml_vec_dot_q4_K_q8_K, q8k},
        {13, 256, 176, quantize_row_q5_K_ref, ggml_vec_dot_q5_K_q8_K, q8k},
        {14, 256, 210, quantize_row_q6_K_ref, ggml_vec_dot_q6_K_q8_K, q8k},
    };
    const uint32_t nt = sizeof types / sizeof types[0];
    put_u32(f, nt);
    for (uint32_t t = 0; t < nt; t++) {
        const uint32_t nbytes = N / types[t].block * types[t].bytes;
        uint8_t *row = malloc(nbytes);
        if (!row) return 1;
        types[t].quantize(w, row, N);
        float s = 0.0f;
        types[t].dot(N, &s, 0, row, 0, types[t].act, 0, 1);
        put_u32(f, types[t].id);
        put_u32(f, nbytes);
        put(f, row, nbytes);
        put(f, &s, 4);
        free(row);
    }
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
