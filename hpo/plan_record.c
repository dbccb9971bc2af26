/* plan_record.c - adopt the planned values of a recorded search (see plan_record.h). */
#include "hpo/plan_record.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "hpo/hpo.h"
#include "hpo/store.h"

static int pr_number(const cJSON *j, const char *key, double *v) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(n) || !isfinite(n->valuedouble)) return 0;
    *v = n->valuedouble;
    return 1;
}

int hpo_plan_record_load(const char *dir, const hpo_config *c, long full_dataset_size, hpo_config *out) {
    *out = *c;
    void *old = NULL;
    int s = hpo_store_read(dir, &old);
    if (s != 0) return s < 0 ? s : 0;
    double subset = 0, resize = 0, iters = 0;
    int ok = pr_number(old, "subset_ratio", &subset) && pr_number(old, "image_resize", &resize) &&
             pr_number(old, "max_iterations", &iters) && subset > 0 && subset <= 1 && resize > 0 && resize <= 1 &&
             iters >= 1 && iters <= 1e6 && iters == floor(iters);
    if (ok) {
        hpo_state st;
        memset(&st, 0, sizeof st);
        st.cfg = *c;
        if (st.cfg.subset_ratio <= 0) st.cfg.subset_ratio = subset;
        if (st.cfg.image_resize <= 0) st.cfg.image_resize = resize;
        if (st.cfg.max_iterations <= 0) st.cfg.max_iterations = (int)iters;
        hpo_config_fill_defaults(&st.cfg);
        st.full_dataset_size = full_dataset_size;
        st.best_id = -1;
        char what[64];
        ok = !hpo_store_same_config(old, &st, what, sizeof what);
        if (ok) {
            /* only the planned values are copied: hpo_run fills the other defaults itself */
            if (out->subset_ratio <= 0) out->subset_ratio = st.cfg.subset_ratio;
            if (out->image_resize <= 0) out->image_resize = st.cfg.image_resize;
            if (out->max_iterations <= 0) out->max_iterations = st.cfg.max_iterations;
        }
    }
    hpo_store_json_free(old);
    return ok;
}
