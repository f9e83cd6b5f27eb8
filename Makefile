# BreastFusion: `make demo` runs the main job, `make test` runs the test suite.
# Both create or update the virtual environment in .venv first; `make test` also builds (once) .venv-slicer,
# a Python holding only what 3D Slicer gives the module's worker (tests/slicer_python/build_env.py).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SLICER_ENV := .venv-slicer
SLICER_STAMP := $(SLICER_ENV)/.inputs

.PHONY: env slicer-env demo test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,tracking]"
	touch $(STAMP)

slicer-env: $(SLICER_STAMP)

$(SLICER_STAMP): $(STAMP) tests/slicer_python/build_env.py tests/slicer_python/slicer-5.10.0-python.txt BreastFusion/Resources/requirements.txt BreastFusionLib/dependencies.py
	$(PY) tests/slicer_python/build_env.py $(SLICER_ENV)

demo: env
	$(PY) -m BreastFusionLib.demo

test: env slicer-env
	$(PY) -m pytest -q

# `make bench`: network throughput (with the bundle's own training as a ratio of the plain loop), then
# the BUSI cross-validation benchmark through the bundle, the shortcut check (overlays kept; the lesion,
# its box or a centred square blanked) and the table (docs/BENCHMARKS.md), then per-case inference
# latency, the warm worker, cold start and bf16 against fp32 on the demo bundle (made first if absent),
# and the pointing games of the heat maps on BUSI (out-of-fold models, centred and off-centre training)
# and on synthetic cases (docs/INFERENCE.md), then the domain-shift suite on the same BUSI models
# (docs/BENCHMARKS.md), and overlay removal against main's (synthetic marks on BUSI, lesion pixels touched,
# time; docs/BENCHMARKS.md), then the deliverable cross-validation ensemble, its measure beside test-time
# augmentation and its heat maps' pointing game. About 3.5 h on a quiet 2-core CPU (all 5 folds everywhere).
# RESNET50_WEIGHTS=path/to/resnet50.pth adds CBAM-ResNet-50 from ImageNet weights.
BUSI ?= ../shared/data/BUSI
BENCH_OUT ?= runs/bench_busi
RESNET50_WEIGHTS ?=
DEMO_OUT ?= out/demo
NICE ?= nice -n 10
# overlay detection before boxed labels and faint calipers (docs/BENCHMARKS.md section 8)
OVERLAYS_BASELINE ?= 355a2f8
DEMO_LITE0 := --set backbone=cbam_efficientnet_lite0 --set pretrained=imagenet --set freeze=last_stage --set spatial_size=300
bench: env
	$(NICE) $(PY) training/bench_networks.py --bundle
	$(NICE) $(PY) training/bench_networks.py --backbone cbam_efficientnet_lite0 --freeze last_stage --size 224
	test -f $(BENCH_OUT)/data/removed/manifest.csv || $(NICE) $(PY) training/prepare_busi.py $(BUSI) $(BENCH_OUT)/data/removed
	test -f $(BENCH_OUT)/data/removed_context/manifest.csv || $(NICE) $(PY) training/prepare_busi.py $(BUSI) $(BENCH_OUT)/data/removed_context --context
	test -f $(BENCH_OUT)/data/kept/manifest.csv || $(NICE) $(PY) training/prepare_busi.py $(BUSI) $(BENCH_OUT)/data/kept --keep-overlays
	test -f $(BENCH_OUT)/data/blanked/manifest.csv || $(NICE) $(PY) training/bench_busi.py blank --dataset $(BENCH_OUT)/data/removed --out $(BENCH_OUT)/data/blanked
	test -f $(BENCH_OUT)/data/box/manifest.csv || $(NICE) $(PY) training/bench_busi.py blank --dataset $(BENCH_OUT)/data/removed --out $(BENCH_OUT)/data/box --shape box
	test -f $(BENCH_OUT)/data/center/manifest.csv || $(NICE) $(PY) training/bench_busi.py blank --dataset $(BENCH_OUT)/data/removed --out $(BENCH_OUT)/data/center --shape center
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/removed --out $(BENCH_OUT) --tag overlays_removed \
		--options lite0_last_stage --keep-models
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/removed_context --out $(BENCH_OUT) --tag overlays_removed \
		--options lite0_last_stage_off_centre --keep-models
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/removed_context --out $(BENCH_OUT) --tag overlays_removed \
		--options lite0_last_stage_off_centre_scale --folds 0,1 --keep-models
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/removed --out $(BENCH_OUT) --tag overlays_removed \
		--options lite0_last_stage,lite0_frozen,resnet50_scratch,resnet50_imagenet $(if $(RESNET50_WEIGHTS),--resnet50-weights $(RESNET50_WEIGHTS))
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/kept --out $(BENCH_OUT) --tag overlays_kept --options lite0_last_stage
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/blanked --out $(BENCH_OUT) --tag lesion_blanked --options lite0_last_stage
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/box --out $(BENCH_OUT) --tag lesion_box_blanked --options lite0_last_stage
	$(NICE) $(PY) training/bench_busi.py cv --dataset $(BENCH_OUT)/data/center --out $(BENCH_OUT) --tag lesion_center_blanked --options lite0_last_stage
	$(PY) training/bench_busi.py table --out $(BENCH_OUT) --figure $(BENCH_OUT)/busi_roc.png
	$(NICE) $(PY) training/bench_feature_cache.py --dataset $(BENCH_OUT)/data/removed --images 64 --size 300 --throughput --out $(BENCH_OUT)/feature_cache.json
	test -d $(DEMO_OUT)/bundle || $(PY) -m BreastFusionLib.demo --out $(DEMO_OUT)
	$(PY) training/bench_inference.py --bundle $(DEMO_OUT)/bundle
	$(PY) training/bench_inference.py --bundle $(DEMO_OUT)/bundle --untrained-size 300
	$(PY) training/bench_cold_start.py --bundle $(DEMO_OUT)/bundle --spatial-size 64
	$(PY) training/bench_cold_start.py --bundle $(DEMO_OUT)/bundle --untrained-size 300
	$(PY) training/compare_precision.py --bundle $(DEMO_OUT)/bundle --dataset $(DEMO_OUT)/crops
	$(PY) training/bench_worker.py --bundle $(DEMO_OUT)/bundle --cases 6 --cold 3
	$(NICE) $(PY) training/pointing_game_busi.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage \
		--json $(BENCH_OUT)/pointing_busi_lite0_last_stage.json --save-in-bundle
	$(NICE) $(PY) training/pointing_game_busi.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre \
		--json $(BENCH_OUT)/pointing_busi_lite0_last_stage_off_centre.json --save-in-bundle
	test -f out/demo_lite0/bundle/runs/fusion/metrics.json || $(NICE) $(PY) -m BreastFusionLib.demo --out out/demo_lite0 $(DEMO_LITE0)
	$(NICE) $(PY) training/pointing_game.py --bundle out/demo_lite0/bundle --model us --cases 100 --json $(BENCH_OUT)/pointing_synthetic_lite0_us.json
	$(NICE) $(PY) training/pointing_game.py --bundle out/demo_lite0/bundle --model fusion --cases 100 --json $(BENCH_OUT)/pointing_synthetic_lite0_fusion.json
	$(NICE) $(PY) training/bench_domain_shift.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage \
		$(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre --json $(BENCH_OUT)/domain_shift_busi.json
	$(NICE) $(PY) training/bench_domain_shift.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre \
		$(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre_scale --shifts blur speckle crop_margin --json $(BENCH_OUT)/domain_shift_busi_scale.json
	$(NICE) $(PY) training/bench_busi.py ensemble --dataset $(BENCH_OUT)/data/removed_context --out $(BENCH_OUT) --option lite0_last_stage_off_centre
	$(NICE) $(PY) training/bench_domain_shift.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre \
		--variants single tta pair pair_tta --shifts blur speckle crop_margin --json $(BENCH_OUT)/ensemble_tta_busi.json
	$(NICE) $(PY) training/pointing_game_busi.py --dataset $(BENCH_OUT)/data/removed --models $(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre \
		--pair --json $(BENCH_OUT)/pointing_busi_pair.json --save-in $(BENCH_OUT)/overlays_removed/lite0_last_stage_off_centre_ensemble
	$(NICE) $(PY) training/bench_overlays.py $(BUSI) --baseline $(OVERLAYS_BASELINE) --json $(BENCH_OUT)/overlays.json

clean:
	rm -rf $(VENV) $(SLICER_ENV) out runs
