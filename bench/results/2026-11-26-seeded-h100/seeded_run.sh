set -uo pipefail
source tools/gpu/cudnn.sh >/dev/null
timeout 200 .gpu/turbine-gpucheck --parts ops > $OUT/ops.log 2>&1; echo "ops rc $?"
grep -E "seeded|FAIL|passed|failed" $OUT/ops.log | grep -v INFO | tail -30
for m in 1.3b 14b; do for b in base new; do bin=.gpu/turbine; [ $b = base ] && bin=.gpu-base/turbine
  timeout 240 $bin bench --model $m --attention sagesla --quant fp8 --warmup 1 --iters 3 --json $OUT/bench-$m-$b.json > $OUT/bench-$m-$b.log 2>&1; echo "$m $b rc $?"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print({k: r.get(k) for k in ['load_s','weights_s']}, 'fwd', r['forward']['median_ms'])" $OUT/bench-$m-$b.json
done; done
