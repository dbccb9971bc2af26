/* test_data_coco.c - COCO loading: the real sample sets against an independent count, and every
 * kind of bad input (temporary files) giving the right code and a message naming file and entry.
 *
 * The expected counts are computed here by walking the JSON with cJSON directly (a second,
 * simpler parse), never copied from coco_load's output.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/coco.h"
#include "engine/ote.h"
#include "tests/expect.h"



static char tmpdir[256];

static void write_file(const char *name, const char *text, char *path_out, size_t n) {
    snprintf(path_out, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path_out, "wb");
    if (!f) {
        perror(path_out);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    return b;
}

/* Independent reference: counts straight from the JSON. */
typedef struct ref_counts {
    int n_images, n_anns, n_cats;
    long first_image_id;
    int boxes_of_first_image;
    double first_bbox[4];
    long first_bbox_cat;
} ref_counts;

static int ref_count(const char *path, ref_counts *r) {
    char *t = slurp(path);
    if (!t) return -1;
    cJSON *js = cJSON_Parse(t);
    free(t);
    if (!js) return -1;
    cJSON *im = cJSON_GetObjectItem(js, "images"), *an = cJSON_GetObjectItem(js, "annotations"),
          *ca = cJSON_GetObjectItem(js, "categories");
    r->n_images = cJSON_GetArraySize(im);
    r->n_anns = cJSON_GetArraySize(an);
    r->n_cats = cJSON_GetArraySize(ca);
    r->first_image_id = (long)cJSON_GetObjectItem(cJSON_GetArrayItem(im, 0), "id")->valuedouble;
    r->boxes_of_first_image = 0;
    const cJSON *a;
    int first = 1;
    cJSON_ArrayForEach(a, an) {
        if ((long)cJSON_GetObjectItem(a, "image_id")->valuedouble == r->first_image_id) {
            r->boxes_of_first_image++;
            if (first) {
                for (int k = 0; k < 4; k++)
                    r->first_bbox[k] = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "bbox"), k)->valuedouble;
                r->first_bbox_cat = (long)cJSON_GetObjectItem(a, "category_id")->valuedouble;
                first = 0;
            }
        }
    }
    cJSON_Delete(js);
    return 0;
}

static void test_airport(const char *shared) {
    char ann[512], root[512];
    snprintf(ann, sizeof ann, "%s/data/airport/annotation_example_train.json", shared);
    snprintf(root, sizeof root, "%s/data/airport/train", shared);
    ref_counts r;
    EXPECT(ref_count(ann, &r) == 0, "airport train JSON readable by the reference counter");
    coco_dataset d;
    int st = coco_load(&d, ann, root);
    EXPECT(st == 0, "airport train loads (status %d %s)", st, ote_errmsg());
    if (st) return;
    EXPECT(d.n_images == r.n_images, "airport images %d == JSON %d", d.n_images, r.n_images);
    EXPECT(d.n_boxes == r.n_anns, "airport boxes %d == JSON annotations %d", d.n_boxes, r.n_anns);
    EXPECT(d.n_cats == 4 && r.n_cats == 4, "airport has 4 categories (%d)", d.n_cats);
    int ids_ok = d.n_cats == 4;
    for (int k = 0; k < d.n_cats && ids_ok; k++) ids_ok = d.cats[k].id == k;
    EXPECT(ids_ok, "airport category ids are 0..3 in label order");
    EXPECT(d.n_cats == 4 && strcmp(d.cats[2].name, "person") == 0 && strcmp(d.cats[0].name, "bg") == 0,
           "label 2 is 'person', label 0 is 'bg'");
    int all_person = 1;
    for (int i = 0; i < d.n_boxes; i++) all_person &= d.boxes[i].label == 2 && d.boxes[i].iscrowd == 0;
    EXPECT(all_person, "every airport box has label 2 (person), not crowd");
    EXPECT(d.images[0].id == r.first_image_id && d.images[0].n_boxes == r.boxes_of_first_image,
           "first image id %ld has %d boxes (JSON %d)", d.images[0].id, d.images[0].n_boxes, r.boxes_of_first_image);
    const coco_box *b = &d.boxes[d.images[0].first_box];
    EXPECT(b->x1 == (float)r.first_bbox[0] && b->y1 == (float)r.first_bbox[1] &&
               b->x2 == (float)(r.first_bbox[0] + r.first_bbox[2]) &&
               b->y2 == (float)(r.first_bbox[1] + r.first_bbox[3]),
           "first box xywh [%g %g %g %g] -> xyxy [%g %g %g %g]", r.first_bbox[0], r.first_bbox[1], r.first_bbox[2],
           r.first_bbox[3], (double)b->x1, (double)b->y1, (double)b->x2, (double)b->y2);
    char expect_path[600];
    snprintf(expect_path, sizeof expect_path, "%s/%s", root, d.images[0].file_name);
    EXPECT(strcmp(d.images[0].path, expect_path) == 0, "path is root/file_name (%s)", d.images[0].path);
    EXPECT(access(d.images[0].path, R_OK) == 0, "resolved image path exists");
    EXPECT(d.images[0].width == 1920 && d.images[0].height == 1080, "size from JSON 1920x1080");
    int total = 0, grouped = 1;
    for (int i = 0; i < d.n_images; i++) {
        grouped &= d.images[i].first_box == total;
        total += d.images[i].n_boxes;
    }
    EXPECT(grouped && total == d.n_boxes, "boxes grouped by image, contiguous");
    char sum[256];
    EXPECT(coco_warning_summary(&d, sum, sizeof sum) == 0 && sum[0] == 0, "no warnings on airport");
    coco_free(&d);
}

static void test_facemask_two_files(const char *shared) {
    char ann[1100], roots[1100], a1[512], a2[512];
    snprintf(a1, sizeof a1, "%s/data/facemask_coco/annotations/custom_train.json", shared);
    snprintf(a2, sizeof a2, "%s/data/facemask_coco/annotations/custom_val.json", shared);
    snprintf(ann, sizeof ann, "%s,%s", a1, a2);
    snprintf(roots, sizeof roots, "%s/data/facemask_coco/train2017,%s/data/facemask_coco/val2017", shared, shared);
    ref_counts r1, r2;
    EXPECT(ref_count(a1, &r1) == 0 && ref_count(a2, &r2) == 0, "facemask JSONs readable by the reference counter");
    coco_dataset d;
    int st = coco_load(&d, ann, roots);
    EXPECT(st == 0, "facemask train+val load as a comma list (status %d %s)", st, ote_errmsg());
    if (st) return;
    EXPECT(d.n_images == r1.n_images + r2.n_images, "facemask images %d == %d + %d", d.n_images, r1.n_images,
           r2.n_images);
    EXPECT(d.n_boxes == r1.n_anns + r2.n_anns, "facemask boxes %d == %d + %d", d.n_boxes, r1.n_anns, r2.n_anns);
    EXPECT(d.n_cats == 3 && d.cats[0].id == 0 && strcmp(d.cats[1].name, "with_mask") == 0,
           "facemask: 3 categories matched by name, id 0 kept");
    int n_path_ok = 0;
    for (int i = 0; i < d.n_images; i += 97) n_path_ok += access(d.images[i].path, R_OK) == 0;
    EXPECT(n_path_ok == (d.n_images + 96) / 97, "sampled image paths of both roots exist (%d)", n_path_ok);
    EXPECT(strstr(d.images[d.n_images - 1].path, "val2017") != NULL, "second file's images use the second root");
    /* per-class box counts against the README (103 / 2443 / 560 in train) computed from train alone */
    coco_dataset t;
    st = coco_load(&t, a1, "");
    int cnt[3] = {0, 0, 0};
    for (int i = 0; st == 0 && i < t.n_boxes; i++)
        if (t.boxes[i].label >= 0 && t.boxes[i].label < 3) cnt[t.boxes[i].label]++;
    EXPECT(st == 0 && cnt[0] == 103 && cnt[1] == 2443 && cnt[2] == 560,
           "facemask train per-label counts %d/%d/%d match the data README", cnt[0], cnt[1], cnt[2]);
    if (st == 0) coco_free(&t);

    /* subsets */
    coco_dataset s1, s2, s3;
    int a = coco_subset(&s1, &d, 50, 7), b = coco_subset(&s2, &d, 50, 7), c = coco_subset(&s3, &d, 50, 8);
    EXPECT(a == 0 && b == 0 && c == 0 && s1.n_images == 50, "subset of 50 images");
    int same = s1.n_images == s2.n_images, differ = 0;
    for (int i = 0; same && i < s1.n_images; i++) same = strcmp(s1.images[i].path, s2.images[i].path) == 0;
    for (int i = 0; i < s1.n_images && i < s3.n_images; i++) differ |= strcmp(s1.images[i].path, s3.images[i].path);
    EXPECT(same, "same seed gives the same subset");
    EXPECT(differ, "another seed gives another subset");
    /* each subset image keeps exactly its own boxes */
    int boxes_ok = 1, order_ok = 1, nb = 0;
    long prev = -1;
    for (int i = 0; i < s1.n_images; i++) {
        int src = -1;
        for (int j = 0; j < d.n_images; j++)
            if (strcmp(d.images[j].path, s1.images[i].path) == 0) src = j;
        if (src < 0 || src <= prev) {
            order_ok = 0;
            continue;
        }
        prev = src;
        boxes_ok &= s1.images[i].n_boxes == d.images[src].n_boxes && s1.images[i].first_box == nb;
        for (int k = 0; k < s1.images[i].n_boxes && boxes_ok; k++)
            boxes_ok = memcmp(&s1.boxes[s1.images[i].first_box + k], &d.boxes[d.images[src].first_box + k],
                              sizeof(coco_box)) == 0;
        nb += s1.images[i].n_boxes;
    }
    EXPECT(order_ok, "subset keeps source order");
    EXPECT(boxes_ok && nb == s1.n_boxes, "subset images keep their own boxes (%d boxes)", nb);
    EXPECT(s1.n_cats == d.n_cats, "subset keeps all categories");
    coco_free(&s1);
    coco_free(&s2);
    coco_free(&s3);
    coco_free(&d);
}

#define IMG2 "\"images\":[{\"id\":1,\"file_name\":\"a.jpg\",\"width\":100,\"height\":50},"                  \
             "{\"id\":2,\"file_name\":\"b.jpg\",\"width\":40,\"height\":40,\"extra\":{\"x\":[1,2]}}]"

static void expect_err(const char *what, const char *json, int code, const char *needle) {
    char path[512];
    char name[64];
    snprintf(name, sizeof name, "bad_%s.json", what);
    write_file(name, json, path, sizeof path);
    coco_dataset d;
    int st = coco_load(&d, path, tmpdir);
    const char *m = ote_errmsg();
    EXPECT(st == code && strstr(m, name) && (!needle || strstr(m, needle)), "%s -> %d (want %d): %s", what, st, code,
           m);
    if (st == 0) coco_free(&d);
    EXPECT(d.n_images == 0 && d.images == NULL, "%s leaves the dataset empty", what);
}

static void test_bad_inputs(void) {
    char path[512];
    coco_dataset d;
    snprintf(path, sizeof path, "%s/does_not_exist.json", tmpdir);
    int st = coco_load(&d, path, "");
    EXPECT(st == OTE_EIO && strstr(ote_errmsg(), "does_not_exist.json"), "missing file -> EIO: %s", ote_errmsg());

    /* issue 13 items 3, 23: a directory and a FIFO are refused by name, without a huge allocation
     * or a hang */
    st = coco_load(&d, tmpdir, "");
    EXPECT(st == OTE_EIO && strstr(ote_errmsg(), "is a directory"), "a directory -> EIO 'is a directory': %s",
           ote_errmsg());
    snprintf(path, sizeof path, "%s/fifo.json", tmpdir);
    EXPECT(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    st = coco_load(&d, path, "");
    EXPECT(st == OTE_EIO && strstr(ote_errmsg(), "fifo.json: not a regular file"), "a FIFO -> EIO, no hang: %s",
           ote_errmsg());
    unlink(path);

    expect_err("malformed", "{\"images\": [ {\"id\": 1,, } ]}", OTE_EPARSE, "line 1");
    expect_err("malformed_line3", "{\n\"images\": [\n {\"id\": 1 \"x\": 2} ]}", OTE_EPARSE, "line 3");
    expect_err("not_object", "[1,2]", OTE_EPARSE, "object");
    expect_err("no_images", "{\"categories\":[]}", OTE_EPARSE, "'images'");
    expect_err("empty_images", "{\"images\":[],\"categories\":[{\"id\":1,\"name\":\"a\"}],\"annotations\":[]}",
               OTE_EPARSE, "empty");
    expect_err("no_file_name",
               "{\"images\":[{\"id\":1,\"width\":10,\"height\":10}],\"categories\":[],\"annotations\":[]}",
               OTE_EPARSE, "images[0]: missing required field 'file_name'");
    expect_err("bad_width",
               "{\"images\":[{\"id\":1,\"file_name\":\"a\",\"width\":\"10\",\"height\":10}],\"categories\":[]}",
               OTE_EPARSE, "'width' is not a number");
    expect_err("dup_image", "{\"images\":[{\"id\":3,\"file_name\":\"a\",\"width\":9,\"height\":9},"
                            "{\"id\":3,\"file_name\":\"b\",\"width\":9,\"height\":9}],\"categories\":[]}",
               OTE_EPARSE, "duplicate image id 3");
    /* issue 13 items 2, 7, 18: no classes is an error naming the file and the key (it crashed a
     * sanitizer build, trained into "detector: num_classes: 0" and evaluated to mAP 0) */
    expect_err("empty_categories", "{" IMG2 ",\"categories\":[],\"annotations\":[]}", OTE_EPARSE,
               "'categories' is empty");
    expect_err("no_bbox", "{" IMG2 ",\"categories\":[{\"id\":1,\"name\":\"a\"}],"
                          "\"annotations\":[{\"id\":5,\"image_id\":1,\"category_id\":1}]}",
               OTE_EPARSE, "annotations[0] (id 5): missing required field 'bbox'");
    expect_err("bbox_3", "{" IMG2 ",\"categories\":[{\"id\":1,\"name\":\"a\"}],"
                         "\"annotations\":[{\"id\":5,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3]}]}",
               OTE_EPARSE, "annotations[0] (id 5)");
    expect_err("dup_cat", "{" IMG2 ",\"categories\":[{\"id\":1,\"name\":\"a\"},{\"id\":1,\"name\":\"b\"}]}",
               OTE_EPARSE, "duplicate category id 1");

    /* Warnings: the load succeeds, the box is dropped or clipped and counted, the first offender named. */
    write_file("warn.json",
               "{" IMG2 ",\"categories\":[{\"id\":9,\"name\":\"nine\",\"supercategory\":\"\"},"
               "{\"id\":0,\"name\":\"zero\"},{\"id\":5,\"name\":\"five\"}],"
               "\"annotations\":["
               "{\"id\":10,\"image_id\":1,\"category_id\":9,\"bbox\":[10,10,20,20],\"segmentation\":null,"
               "\"iscrowd\":0,\"area\":123.5,\"attributes\":{},\"is_occluded\":false},"
               "{\"id\":11,\"image_id\":1,\"category_id\":0,\"bbox\":[10,10,0,20],\"segmentation\":[]},"
               "{\"id\":12,\"image_id\":1,\"category_id\":5,\"bbox\":[90,40,20,20]},"
               "{\"id\":13,\"image_id\":1,\"category_id\":5,\"bbox\":[200,10,5,5]},"
               "{\"id\":14,\"image_id\":99,\"category_id\":5,\"bbox\":[1,1,5,5]},"
               "{\"id\":15,\"image_id\":2,\"category_id\":7,\"bbox\":[1,1,5,5]},"
               "{\"id\":16,\"image_id\":2,\"category_id\":0,\"bbox\":[1,2,3,4],\"iscrowd\":1},"
               "{\"id\":17,\"image_id\":1,\"category_id\":5,\"bbox\":[5,6,-1,4]}"
               "]}",
               path, sizeof path);
    st = coco_load(&d, path, "/root/x");
    EXPECT(st == 0, "file with bad boxes still loads (%d %s)", st, ote_errmsg());
    if (st == 0) {
        EXPECT(d.n_images == 2 && d.n_boxes == 3, "2 images, 3 boxes kept (%d, %d)", d.n_images, d.n_boxes);
        EXPECT(d.n_cats == 3 && d.cats[0].id == 0 && d.cats[1].id == 5 && d.cats[2].id == 9,
               "categories sorted by id 0,5,9 (gaps allowed)");
        EXPECT(d.n_boxes == 3 && d.boxes[0].label == 2 && d.boxes[0].area == 123.5 && d.boxes[0].ann_id == 10,
               "category 9 -> label 2, area from the file");
        EXPECT(d.n_boxes == 3 && d.boxes[1].label == 1 && d.boxes[1].x1 == 90 && d.boxes[1].x2 == 100 &&
                   d.boxes[1].y1 == 40 && d.boxes[1].y2 == 50,
               "box crossing the border clipped to [90,40,100,50]");
        EXPECT(d.n_boxes == 3 && d.images[1].n_boxes == 1 && d.boxes[2].iscrowd == 1 && d.boxes[2].label == 0 &&
                   d.boxes[2].area == 12.0,
               "crowd box kept with iscrowd, area defaults to w*h");
        EXPECT(d.n_warn[COCO_WARN_BAD_SIZE] == 2 && d.n_warn[COCO_WARN_CLIPPED] == 1 &&
                   d.n_warn[COCO_WARN_OUTSIDE] == 1 && d.n_warn[COCO_WARN_UNKNOWN_IMAGE] == 1 &&
                   d.n_warn[COCO_WARN_UNKNOWN_CAT] == 1,
               "warning counts by kind 2/1/1/1/1");
        EXPECT(d.n_warn_clipped == 1 && d.n_warn_dropped == 5, "legacy counters clipped=1 dropped=5");
        EXPECT(strstr(d.warn_first[COCO_WARN_BAD_SIZE], "warn.json: annotations[1] (id 11)") != NULL,
               "bad size names the first offender: %s", d.warn_first[COCO_WARN_BAD_SIZE]);
        EXPECT(strstr(d.warn_first[COCO_WARN_OUTSIDE], "annotations[3] (id 13)") != NULL,
               "outside box named: %s", d.warn_first[COCO_WARN_OUTSIDE]);
        EXPECT(strstr(d.warn_first[COCO_WARN_UNKNOWN_IMAGE], "unknown image_id 99") != NULL,
               "unknown image named: %s", d.warn_first[COCO_WARN_UNKNOWN_IMAGE]);
        EXPECT(strstr(d.warn_first[COCO_WARN_UNKNOWN_CAT], "unknown category_id 7") != NULL,
               "unknown category named: %s", d.warn_first[COCO_WARN_UNKNOWN_CAT]);
        char sum[2048];
        int n = coco_warning_summary(&d, sum, sizeof sum);
        EXPECT(n == 6 && strstr(sum, "warn.json") && strchr(sum, '\n') == NULL, "one-line summary: %s", sum);
        EXPECT(strcmp(d.images[0].path, "/root/x/a.jpg") == 0, "root joined: %s", d.images[0].path);
        coco_free(&d);
    }

    /* Two files: categories matched by name even with other ids; roots one per file. */
    char p1[512], p2[512], both[1100];
    write_file("m1.json",
               "{\"images\":[{\"id\":1,\"file_name\":\"a.jpg\",\"width\":10,\"height\":10}],"
               "\"categories\":[{\"id\":1,\"name\":\"cat\"},{\"id\":2,\"name\":\"dog\"}],"
               "\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":2,\"bbox\":[1,1,2,2]}]}",
               p1, sizeof p1);
    write_file("m2.json",
               "{\"images\":[{\"id\":1,\"file_name\":\"b.jpg\",\"width\":10,\"height\":10}],"
               "\"categories\":[{\"id\":1,\"name\":\"cat\"},{\"id\":7,\"name\":\"dog\"},{\"id\":3,\"name\":\"cow\"}],"
               "\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":7,\"bbox\":[1,1,2,2]},"
               "{\"id\":2,\"image_id\":1,\"category_id\":3,\"bbox\":[1,1,2,2]}]}",
               p2, sizeof p2);
    snprintf(both, sizeof both, "%s, %s", p1, p2);
    st = coco_load(&d, both, "r1,r2");
    EXPECT(st == 0, "two files with different ids for one name load (%d %s)", st, ote_errmsg());
    if (st == 0) {
        EXPECT(d.n_cats == 3 && d.cats[0].id == 1 && d.cats[1].id == 2 && d.cats[2].id == 3 &&
                   strcmp(d.cats[2].name, "cow") == 0,
               "union of categories by name, sorted by first id: cat(1) dog(2) cow(3)");
        EXPECT(d.n_boxes == 3 && d.boxes[0].label == 1 && d.boxes[1].label == 1 && d.boxes[2].label == 2,
               "'dog' is label 1 in both files, 'cow' label 2");
        EXPECT(strcmp(d.images[0].path, "r1/a.jpg") == 0 && strcmp(d.images[1].path, "r2/b.jpg") == 0,
               "i-th file uses the i-th root");
        coco_free(&d);
    }
    st = coco_load(&d, both, "r1,r2,r3");
    EXPECT(st == OTE_EINVAL, "3 roots for 2 files -> EINVAL: %s", ote_errmsg());
    write_file("m3.json",
               "{\"images\":[{\"id\":1,\"file_name\":\"a.jpg\",\"width\":10,\"height\":10}],"
               "\"categories\":[{\"id\":2,\"name\":\"horse\"}]}",
               p2, sizeof p2);
    snprintf(both, sizeof both, "%s,%s", p1, p2);
    st = coco_load(&d, both, "");
    EXPECT(st == OTE_EPARSE && strstr(ote_errmsg(), "m3.json") && strstr(ote_errmsg(), "horse"),
           "id clash between names across files -> EPARSE: %s", ote_errmsg());
    st = coco_load(&d, p2, "");
    EXPECT(st == 0 && d.n_boxes == 0 && d.n_images == 1, "no 'annotations' array: images without boxes load");
    if (st == 0) coco_free(&d);
}

int main(void) {
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ote_test_coco_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_airport(shared);
    test_facemask_two_files(shared);
    test_bad_inputs();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return expect_finish();
}
