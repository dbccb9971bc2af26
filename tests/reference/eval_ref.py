#!/usr/bin/python3
"""eval_ref.py - numpy reference for data/eval_*.c on cases the shared fixtures do not reach.

The shared fixtures (../shared/fixtures/eval, made with pycocotools and mmdet) have at most three
classes. This script restates, with numpy doing the arithmetic, the two evaluators as
spec-detector.md section 10 and fixtures/eval/README.md describe them, and writes cases in the
same JSON format (so tests/test_data_eval.c reads them with the same code):

  eval_ref_many_classes.json  12 classes, 40 images, crowd gts: the float32 mAP mean over >= 8
                              classes (numpy pairwise in float32) and COCO means over more than
                              8192 entries (numpy sums them in 8192-element chunks)
  eval_ref_dense.json         2 classes, 4 images with 60 gts and 400 dets each: maxDets 100/300
                              cuts, VOC AP sums of more than 128 terms, and a gt whose
                              annotation id is 0 (pycocotools then counts its matches as misses)

No evaluator code is copied; pycocotools and mmdet are not installed here. Scores are distinct
(k / 2^24), coordinates multiples of 1/64, so the float32/float64 conversions are exact and no
sort order depends on a tie. Run: /usr/bin/python3 tests/reference/eval_ref.py
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


# ---------------------------------------------------------------- VOC (mmdet eval_map, 'area')

def iou_f32(d, g):
    """(n,4) x (m,4) xyxy -> (n,m) IoU in float32, union clamped to float32(1e-6)."""
    d = d.astype(np.float32)
    g = g.astype(np.float32)
    ad = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    ag = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    out = np.zeros((len(d), len(g)), dtype=np.float32)
    for i in range(len(d)):
        w = np.maximum(np.minimum(d[i, 2], g[:, 2]) - np.maximum(d[i, 0], g[:, 0]), np.float32(0))
        h = np.maximum(np.minimum(d[i, 3], g[:, 3]) - np.maximum(d[i, 1], g[:, 1]), np.float32(0))
        ov = w * h
        un = np.maximum(ad[i] + ag - ov, np.float32(1e-6))
        out[i] = ov / un
    return out


def voc_image(dets, gts, ign):
    """One image, one class: dets (n,5) float32, gts (m,4), ign (m,) bool -> tp, fp (n,)."""
    n = len(dets)
    tp = np.zeros(n, dtype=np.float32)
    fp = np.zeros(n, dtype=np.float32)
    if len(gts) == 0:
        fp[:] = 1
        return tp, fp
    ious = iou_f32(dets[:, :4], gts)
    best = ious.max(axis=1)
    arg = ious.argmax(axis=1)
    covered = np.zeros(len(gts), dtype=bool)
    for i in np.argsort(-dets[:, 4], kind='stable'):
        if best[i] >= 0.5:
            g = arg[i]
            if ign[g]:
                continue
            if not covered[g]:
                covered[g] = True
                tp[i] = 1
            else:
                fp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


def voc_eval(case, crowd_ignored):
    cats = [c['id'] for c in case['categories']]
    per = {}
    aps = []
    for k, cid in enumerate(cats):
        all_d, all_tp, all_fp = [], [], []
        num_gts = 0
        for im in case['images']:
            d = np.array([[b['bbox'][0], b['bbox'][1], b['bbox'][0] + b['bbox'][2],
                           b['bbox'][1] + b['bbox'][3], b['score']]
                          for b in case['detections']
                          if b['image_id'] == im['id'] and b['category_id'] == cid],
                         dtype=np.float32).reshape(-1, 5)
            real = [a for a in case['annotations']
                    if a['image_id'] == im['id'] and a['category_id'] == cid and not a['iscrowd']]
            crowd = [a for a in case['annotations']
                     if a['image_id'] == im['id'] and a['category_id'] == cid and a['iscrowd']]
            if not crowd_ignored:
                crowd = []
            g = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]] for a in real + crowd],
                         dtype=np.float32).reshape(-1, 4)
            ign = np.array([False] * len(real) + [True] * len(crowd), dtype=bool)
            num_gts += len(real)
            tp, fp = voc_image(d, g, ign)
            all_d.append(d)
            all_tp.append(tp)
            all_fp.append(fp)
        d = np.vstack(all_d)
        order = np.argsort(-d[:, 4], kind='stable')
        # shapes as mmdet has them (one scale): tp/fp (1, n), num_gts (1,) int
        tp = np.cumsum(np.hstack(all_tp)[order][None, :], axis=1)
        fp = np.cumsum(np.hstack(all_fp)[order][None, :], axis=1)
        eps = np.finfo(np.float32).eps
        ng = np.array([num_gts], dtype=int)
        rec = (tp / np.maximum(ng[:, None], eps))[0]
        prec = (tp / np.maximum(tp + fp, eps))[0]
        assert tp.dtype == np.float32 and prec.dtype == np.float32 and rec.dtype == np.float64
        mrec = np.hstack((np.zeros(1), rec, np.ones(1)))
        mpre = np.hstack((np.zeros(1), prec, np.zeros(1)))
        for i in range(len(mpre) - 1, 0, -1):
            mpre[i - 1] = max(mpre[i - 1], mpre[i])
        idx = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.float32(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
        name = case['categories'][k]['name']
        per[name] = {'ap': float(ap), 'num_gts': num_gts, 'num_dets': int(len(d))}
        if num_gts > 0:
            aps.append(ap)
    mean = float(np.array(aps, dtype=np.float32).mean()) if aps else 0.0
    return mean, per


# ---------------------------------------------------------------- COCO (COCOeval, bbox)

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.0, 101)
AREAS = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)]


def coco_iou(d, g, crowd):
    x = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    if x <= 0:
        return 0.0
    y = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if y <= 0:
        return 0.0
    inter = x * y
    da, ga = d[2] * d[3], g[2] * g[3]
    return inter / (da if crowd else da + ga - inter)


def coco_eval(case, max_dets):
    img_ids = sorted(i['id'] for i in case['images'])
    cat_ids = sorted(c['id'] for c in case['categories'])
    dets = [dict(d, id=i + 1, area=d['bbox'][2] * d['bbox'][3]) for i, d in enumerate(case['detections'])]
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(cat_ids), len(AREAS), len(max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cid in enumerate(cat_ids):
        per_area = [[] for _ in range(A)]
        for iid in img_ids:
            gts = [a for a in case['annotations'] if a['image_id'] == iid and a['category_id'] == cid]
            dts = [d for d in dets if d['image_id'] == iid and d['category_id'] == cid]
            if not gts and not dts:
                continue
            order = np.argsort([-d['score'] for d in dts], kind='mergesort')
            dts = [dts[i] for i in order][:max_dets[-1]]
            for a, (lo, hi) in enumerate(AREAS):
                ig = [1 if (g['iscrowd'] or g['area'] < lo or g['area'] > hi) else 0 for g in gts]
                gorder = np.argsort(ig, kind='mergesort')
                gs = [gts[i] for i in gorder]
                gig = [ig[i] for i in gorder]
                dtm = np.zeros((T, len(dts)))
                dtig = np.zeros((T, len(dts)), dtype=bool)
                for t, thr in enumerate(IOU_THRS):
                    taken = [False] * len(gs)
                    for di, d in enumerate(dts):
                        best, m = min(thr, 1 - 1e-10), -1
                        for gi, g in enumerate(gs):
                            if taken[gi] and not g['iscrowd']:
                                continue
                            if m > -1 and gig[m] == 0 and gig[gi] == 1:
                                break
                            v = coco_iou(d['bbox'], g['bbox'], g['iscrowd'])
                            if v < best:
                                continue
                            best, m = v, gi
                        if m == -1:
                            continue
                        dtig[t, di] = gig[m] == 1
                        dtm[t, di] = gs[m]['id']  # pycocotools keeps the gt id: id 0 reads as "no match"
                        taken[m] = True
                out = np.array([d['area'] < lo or d['area'] > hi for d in dts], dtype=bool)
                dtig = dtig | ((dtm == 0) & out[None, :])
                per_area[a].append((np.array([d['score'] for d in dts]), dtm, dtig, np.array(gig)))
        for a in range(A):
            entries = per_area[a]
            if not entries:
                continue
            for mi, md in enumerate(max_dets):
                scores = np.concatenate([e[0][:md] for e in entries])
                order = np.argsort(-scores, kind='mergesort')
                dtm = np.concatenate([e[1][:, :md] for e in entries], axis=1)[:, order]
                dtig = np.concatenate([e[2][:, :md] for e in entries], axis=1)[:, order]
                npig = int(np.count_nonzero(np.concatenate([e[3] for e in entries]) == 0))
                if npig == 0:
                    continue
                tps = np.cumsum((dtm != 0) & ~dtig, axis=1).astype(np.float64)
                fps = np.cumsum((dtm == 0) & ~dtig, axis=1).astype(np.float64)
                for t in range(T):
                    tp, fp = tps[t], fps[t]
                    n = len(tp)
                    rc = tp / npig
                    pr = list(tp / (fp + tp + np.spacing(1)))
                    recall[t, k, a, mi] = rc[-1] if n else 0
                    for i in range(n - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    q = np.zeros(R)
                    for r, pos in enumerate(np.searchsorted(rc, REC_THRS, side='left')):
                        if pos >= n:
                            break
                        q[r] = pr[pos]
                    precision[t, :, k, a, mi] = q

    def mean_valid(s):
        v = s[s > -1]
        return float(np.mean(v)) if len(v) else -1.0

    def ap(thr=None, area=0, md=None):
        mi = [i for i, m in enumerate(max_dets) if m == md]
        if not mi:
            return -1.0
        s = precision[:, :, :, area, mi[0]]
        if thr is not None:
            s = s[np.where(IOU_THRS == thr)[0]]
        return mean_valid(s)

    def ar(area=0, md=None):
        return mean_valid(recall[:, :, area, max_dets.index(md)])

    m2 = max_dets[2]
    stats = [ap(md=100), ap(0.5, md=m2), ap(0.75, md=m2), ap(area=1, md=m2), ap(area=2, md=m2),
             ap(area=3, md=m2), ar(md=max_dets[0]), ar(md=max_dets[1]), ar(md=m2), ar(1, m2), ar(2, m2),
             ar(3, m2)]
    per = {}
    for k, c in enumerate(sorted(case['categories'], key=lambda c: c['id'])):
        s = precision[:, :, k, 0, M - 1]
        per[c['name']] = {'ap': mean_valid(s), 'ap50': mean_valid(s[0]), 'ap75': mean_valid(s[5]),
                          'ar': mean_valid(recall[:, k, 0, M - 1])}
    return stats, per


# ---------------------------------------------------------------- cases

def make_case(name, rng, n_images, n_classes, gts_per_image, dets_per_image, crowd_frac, id0=False):
    cats = [{'id': 2 * k + 1, 'name': 'class%02d' % k} for k in range(n_classes)]
    images = [{'id': 3 * i + 2, 'width': 640, 'height': 480} for i in range(n_images)]
    anns, dets = [], []
    used = set()

    def score():
        while True:
            s = int(rng.integers(1, 1 << 24))
            if s not in used:
                used.add(s)
                return s / float(1 << 24)

    def q64(v):
        return round(v * 64) / 64.0

    for im in images:
        gts = []
        for _ in range(int(rng.integers(1, gts_per_image + 1))):
            w, h = int(rng.integers(6, 200)), int(rng.integers(6, 200))
            x, y = int(rng.integers(0, 640 - w)), int(rng.integers(0, 480 - h))
            a = {'id': len(anns) + (0 if id0 else 1), 'image_id': im['id'],
                 'category_id': cats[int(rng.integers(0, n_classes))]['id'], 'bbox': [x, y, w, h],
                 'area': w * h, 'iscrowd': int(rng.random() < crowd_frac)}
            anns.append(a)
            gts.append(a)
        for _ in range(dets_per_image):
            if gts and rng.random() < 0.6:
                g = gts[int(rng.integers(0, len(gts)))]
                x, y, w, h = g['bbox']
                j = rng.normal(0, 0.08 * min(w, h) + 1, 4)
                b = [q64(x + j[0]), q64(y + j[1]), q64(max(w + j[2], 1)), q64(max(h + j[3], 1))]
                cid = g['category_id'] if rng.random() < 0.85 else cats[int(rng.integers(0, n_classes))]['id']
            else:
                w, h = float(rng.integers(4, 160)), float(rng.integers(4, 160))
                b = [q64(rng.random() * (640 - w)), q64(rng.random() * (480 - h)), w, h]
                cid = cats[int(rng.integers(0, n_classes))]['id']
            dets.append({'image_id': im['id'], 'category_id': cid, 'bbox': b, 'score': score()})
    order = rng.permutation(len(dets))  # results-file order independent of image order
    dets = [dets[i] for i in order]
    case = {'name': name, 'description': '', 'notes': 'written by tests/reference/eval_ref.py',
            'images': images, 'categories': cats, 'annotations': anns, 'detections': dets}
    voc, voc_per = voc_eval(case, True)
    voc_a, voc_per_a = voc_eval(case, False)
    stats, coco_per = coco_eval(case, [1, 10, 100])
    stats_mm, _ = coco_eval(case, [100, 300, 1000])
    case['expected'] = {'coco_stats': stats, 'coco_stats_mmdet': stats_mm, 'voc_map_050': voc,
                        'voc_ap_per_class': voc_per, 'voc_map_050_crowd_absent': voc_a,
                        'voc_ap_per_class_crowd_absent': voc_per_a, 'coco_per_category': coco_per}
    return case


def check_shared():
    """This reference must reproduce every pycocotools/mmdet number of the shared fixtures."""
    import glob
    d = os.path.join(os.environ.get('OTE_SHARED', os.path.join(os.path.dirname(OUT), '..', '..', '..', 'shared')),
                     'fixtures', 'eval')
    files = sorted(glob.glob(os.path.join(d, '*.json')))
    assert files, 'shared fixtures not found in ' + d
    for f in files:
        c = json.load(open(f))
        e = c['expected']
        v, vp = voc_eval(c, True)
        va, vpa = voc_eval(c, False)
        s, per = coco_eval(c, [1, 10, 100])
        sm, _ = coco_eval(c, [100, 300, 1000])
        assert v == e['voc_map_050'] and vp == e['voc_ap_per_class'], f
        assert va == e['voc_map_050_crowd_absent'] and vpa == e['voc_ap_per_class_crowd_absent'], f
        assert s == e['coco_stats'] and sm == e['coco_stats_mmdet'], f
        for k, x in per.items():
            for key in x:
                assert abs(x[key] - e['coco_per_category'][k][key]) <= 1e-12, (f, k, key)
    print('reproduces all %d shared fixtures exactly' % len(files))


def main():
    check_shared()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261129)
    cases = [
        make_case('eval_ref_many_classes', rng, 40, 12, 8, 9, 0.06),
        make_case('eval_ref_dense', rng, 4, 2, 60, 400, 0.0, id0=True),
    ]
    for c in cases:
        c['description'] = {
            'eval_ref_many_classes': '12 classes (float32 pairwise mAP mean), 40 images, 6% crowd gts; '
                                     'COCO means over more than 8192 entries',
            'eval_ref_dense': '400 dets and up to 60 gts per image: maxDets cuts, long VOC curves, '
                              'a gt with annotation id 0',
        }[c['name']]
        with open(os.path.join(OUT, c['name'] + '.json'), 'w') as f:
            json.dump(c, f, indent=0)
        e = c['expected']
        print(c['name'], 'voc', e['voc_map_050'], 'coco AP', e['coco_stats'][0])


if __name__ == '__main__':
    main()
