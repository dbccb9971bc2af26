#!/usr/bin/python3
"""fuzz/seeds.py OUT [SHARED] - writes the libFuzzer seed corpora OUT/<harness>/ from real files.

  coco        ../shared/data annotation files (airport; 6 images of face-mask validation) and the
              ../shared/fixtures/eval ground truths (COCO files with extra keys)
  results     the fixtures' detection lists as COCO results files, their image/category ids mapped
              onto the fixed ground truth of fuzz_results.c (images 1, 2, 7; categories 1, 2, 5)
  template    the shipped template.yaml, and it with every optional model key removed
  hpo_config  the shipped hpo_config.yaml and the OTE tutorial's edit (learning rate 0.001-0.01)
  pth         small checkpoints torch.save writes in the three layouts pth_load reads (OTE dict,
              mmcv {'state_dict'}, bare state dict; float32, float16, int64 and 0-d tensors, a
              shared storage) and one legacy (non-zip) file it must refuse
  tflite      a 3 kB model with the real MobileNetV2 files' structure (fuzz/tflite_seed.py): the real
              files are 4 MB, above libFuzzer's 1 MB input limit, and would only ever be seen cut
Needs python3-torch for the pth seeds (the test dependencies install it).
"""
import collections
import glob
import json
import os
import shutil
import sys

out = sys.argv[1]
src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(src, "..", "shared")


def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(d, name), mode) as f:
        f.write(data)


def copy(harness, path, name=None):
    with open(path, "rb") as f:
        put(harness, name or os.path.basename(path), f.read())


fixtures = sorted(glob.glob(os.path.join(shared, "fixtures", "eval", "*.json")))
copy("coco", os.path.join(shared, "data", "airport", "annotation_example_train.json"))
fm = json.load(open(os.path.join(shared, "data", "facemask_coco", "annotations", "custom_val.json")))
keep = {im["id"] for im in fm["images"][:6]}  # an excerpt: the first 6 images and their boxes
fm["images"] = [im for im in fm["images"] if im["id"] in keep]
fm["annotations"] = [a for a in fm["annotations"] if a["image_id"] in keep]
put("coco", "facemask_val_excerpt.json", json.dumps(fm, indent=1))
for p in fixtures:
    copy("coco", p, "gt_" + os.path.basename(p))
    fx = json.load(open(p))
    imgs, cats = [1, 2, 7], [1, 2, 5]
    img_map = {im["id"]: imgs[i % 3] for i, im in enumerate(fx["images"])}
    cat_map = {c["id"]: cats[i % 3] for i, c in enumerate(fx["categories"])}
    dets = [dict(d, image_id=img_map.get(d["image_id"], 1), category_id=cat_map.get(d["category_id"], 1))
            for d in fx["detections"]][:60]
    put("results", "det_" + os.path.basename(p), json.dumps(dets))

tdir = os.path.join(src, "models", "templates", "gen3_mobilenetV2_ATSS")
copy("template", os.path.join(tdir, "template.yaml"))
text = open(os.path.join(tdir, "template.yaml")).read()
lines = [l for l in text.splitlines(True) if not l.startswith(("  backbone:", "  tf_padding:", "  pretrained_backbone:", "  seed:"))]
put("template", "template_minimal.yaml", "".join(lines))
copy("hpo_config", os.path.join(tdir, "hpo_config.yaml"))
hc = open(os.path.join(tdir, "hpo_config.yaml")).read()
put("hpo_config", "hpo_config_tutorial.yaml", hc.replace("      - 0.1\n", "      - 0.01\n", 1))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflite_seed  # noqa: E402
os.makedirs(os.path.join(out, "tflite"), exist_ok=True)
tflite_seed.main(os.path.join(out, "tflite", "toy_mobilenet_ops.tflite"))

import torch  # noqa: E402 (only the pth seeds need it)

torch.manual_seed(0)
sd = collections.OrderedDict()
sd["backbone.features.0.0.weight"] = torch.randn(4, 3, 3, 3)
sd["backbone.features.0.1.weight"] = torch.ones(4)
sd["backbone.features.0.1.running_mean"] = torch.zeros(4)
sd["backbone.features.0.1.num_batches_tracked"] = torch.tensor(7)
sd["bbox_head.atss_cls.bias"] = torch.full((3,), -4.595)
tmp = os.path.join(out, "tmp.pth")
os.makedirs(out, exist_ok=True)


def save(name, obj, **kw):
    torch.save(obj, tmp, **kw)
    with open(tmp, "rb") as f:
        put("pth", name, f.read())
    os.remove(tmp)


save("ote.pth", {"model": sd, "config": {"learning_parameters": {"batch_size": {"value": 8}}},
                 "confidence_threshold": 0.35, "VERSION": 1})
save("mmcv.pth", {"meta": {"epoch": 3, "mmdet_version": "2.13.0"}, "state_dict": sd})
base = torch.arange(12, dtype=torch.float32)
bare = collections.OrderedDict([("a.weight", base[:6].view(2, 3)), ("a.bias", base[6:]),
                                ("h.weight", torch.randn(2, 2).half()), ("i.idx", torch.arange(5))])
save("bare_shared_storage.pth", bare)
save("legacy.pth", {"model": sd}, _use_new_zipfile_serialization=False)
print("fuzz seeds in %s: %s" % (out, ", ".join("%s %d" % (h, len(os.listdir(os.path.join(out, h))))
                                              for h in sorted(os.listdir(out)))))
