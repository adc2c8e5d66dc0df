/* Row gathers and scatters of DIN's packed behaviors, one pass each.

   torch's CPU index_add (and the backward of index_select) goes through scatter_add with
   an index expanded to every element; for [n ~ 9k, d = 16..64] rows that is 0.1-0.4 ms per
   call (worst on tiny tables, where consecutive rows hit the same output row), against a
   few microseconds for a plain row loop. The fused ops below also save the intermediate
   [n, d] products and their separate backward passes.

   Row-major float32; ids / rows are int64 in range (checked by the caller,
   dinrec/kernels/rows.py). Outputs that accumulate must hold zeros (or the running sum)
   on entry. */

#include <stdint.h>

/* out[ids[i], :] += src[i, :]    (out [*, d], src [n, d]) */
void dinrec_index_add_rows(int64_t n, int64_t d, const int64_t *restrict ids,
                           const float *restrict src, float *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        const float *s = src + i * d;
        float *o = out + ids[i] * d;
        for (int64_t j = 0; j < d; j++) o[j] += s[j];
    }
}

/* out[rows[i], :] += w[i] * src[i, :]    (attention pooling: interest = sum_i w_i k_i) */
void dinrec_weighted_row_sum(int64_t n, int64_t d, const int64_t *restrict rows,
                             const float *restrict w, const float *restrict src,
                             float *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        const float *s = src + i * d;
        float *o = out + rows[i] * d, wi = w[i];
        for (int64_t j = 0; j < d; j++) o[j] += wi * s[j];
    }
}

/* Backward of the above given g = dL/dout [*, d]:
   grad_w[i] = <g[rows[i]], src[i]>,  grad_src[i] = w[i] * g[rows[i]]  (either may be NULL) */
void dinrec_weighted_row_sum_backward(int64_t n, int64_t d, const int64_t *restrict rows,
                                      const float *restrict w, const float *restrict src,
                                      const float *restrict g, float *restrict grad_w,
                                      float *restrict grad_src) {
    for (int64_t i = 0; i < n; i++) {
        const float *s = src + i * d, *gr = g + rows[i] * d;
        if (grad_w) {
            float dot = 0.0f;
            for (int64_t j = 0; j < d; j++) dot += gr[j] * s[j];
            grad_w[i] = dot;
        }
        if (grad_src) {
            float *o = grad_src + i * d, wi = w[i];
            for (int64_t j = 0; j < d; j++) o[j] = wi * gr[j];
        }
    }
}

/* The activation unit's per-behavior input: out[i] = [keys[i], keys[i] * query[rows[i]]]
   (keys [n, e], query [b, e], out [n, 2e]). */
void dinrec_key_query(int64_t n, int64_t e, const int64_t *restrict rows,
                      const float *restrict keys, const float *restrict query,
                      float *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        const float *k = keys + i * e, *q = query + rows[i] * e;
        float *o = out + i * 2 * e;
        for (int64_t j = 0; j < e; j++) {
            o[j] = k[j];
            o[e + j] = k[j] * q[j];
        }
    }
}

/* Backward given g = dL/dout [n, 2e]:
   grad_keys[i] = g[i, :e] + g[i, e:] * query[rows[i]]     (may be NULL)
   grad_query[rows[i]] += g[i, e:] * keys[i]                (may be NULL; zeros on entry) */
void dinrec_key_query_backward(int64_t n, int64_t e, const int64_t *restrict rows,
                               const float *restrict keys, const float *restrict query,
                               const float *restrict g, float *restrict grad_keys,
                               float *restrict grad_query) {
    for (int64_t i = 0; i < n; i++) {
        const float *k = keys + i * e, *q = query + rows[i] * e, *gr = g + i * 2 * e;
        if (grad_keys) {
            float *o = grad_keys + i * e;
            for (int64_t j = 0; j < e; j++) o[j] = gr[j] + gr[e + j] * q[j];
        }
        if (grad_query) {
            float *o = grad_query + rows[i] * e;
            for (int64_t j = 0; j < e; j++) o[j] += gr[e + j] * k[j];
        }
    }
}
