#!/usr/bin/env bash
# Record the regression gate's reference (baselines/gate/reference.json) from a clean checkout:
#   baselines/gate/record.sh RESULTS_DIR
# Each cell separates bp, dfa and shallow with its seeds at the gate scale (tasks/*/hparams.yaml,
# `scale: gate`); the digits MLP also carries the further method families. docs/gate.md explains it.
set -euo pipefail
results="${1:?usage: baselines/gate/record.sh RESULTS_DIR}"
run() { dfabench run "$@" --scale gate --results "$results"; }
# Seeds: enough that a Welch test at the Bonferroni level (about 0.0004 one-sided) has the degrees of
# freedom to see a few seed deviations (critical t 9.2 with 3 seeds, 5.3 with 5, 4.3 with 8, 3.7 with
# 20); the cheap MLP cell carries 20, so that FA, hybrid and a noisier feedback path are seen there.
run mlp/digits/mlp --method bp,dfa,shallow,fa,dfa-sign,drtp,hybrid --seeds 20
run graph/csbm/gcn --method bp,dfa,shallow --seeds 10
run ctr/synthetic/dcn --method bp,dfa,shallow --seeds 6
run vision/digits/lenet --method bp,dfa,shallow --seeds 8
run nerf/blobs/nerf --method bp,dfa,shallow --seeds 8
run lm/kjv/transformer --method bp,dfa,shallow --seeds 5
run lm/kjv/gpt2-preln --method dfa --seeds 2
dfabench baseline record --scale gate --results "$results" \
  --finding "lm/kjv/gpt2-preln:dfa:tests/test_lm_task.py::test_dfa_collapses_the_pre_ln_stream_and_not_the_post_ln_one|the pre-LN collapse: DFA on the unigram floor"
