#!/usr/bin/env bash
# Same-host A/B of two builds of `turbine bench`, from the repository root of a GPU host:
#
#   tools/gpu/ab_bench.sh LABEL OLD_BIN NEW_BIN ROUNDS [turbine bench args...]
#
# runs OLD, NEW, OLD, NEW, ... (ROUNDS pairs, alternating so a host's drift hits both alike), each
# writing $OUT/ab-LABEL/{old,new}-N.json, then prints every run's median and min forward and the
# two builds' per-op profiles (the last pair) side by side. Exits non-zero when a run fails.
set -uo pipefail
label=$1 old=$2 new=$3 rounds=$4
shift 4
dir="${OUT:-ab-out}/ab-$label"
mkdir -p "$dir"
status=0
for ((i = 1; i <= rounds; i++)); do
    for side in old new; do
        bin=$old
        [ "$side" = new ] && bin=$new
        timeout 300 "$bin" bench "$@" --json "$dir/$side-$i.json" >"$dir/$side-$i.log" 2>&1 \
            || { echo "$label $side-$i: exit $? (log: $dir/$side-$i.log)"; status=1; }
    done
done
python3 - "$dir" "$label" "$rounds" <<'PY'
import json, sys
d, label, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(name):
    try:
        return json.load(open(f"{d}/{name}.json"))
    except Exception:
        return None
print(f"== {label}")
for i in range(1, rounds + 1):
    for side in ("old", "new"):
        r = load(f"{side}-{i}")
        if r:
            f = r["forward"]
            print(f"  {side}-{i}: median {f['median_ms']:9.2f} ms  min {f['min_ms']:9.2f} ms"
                  f"  peak {r['device']['peak_live_bytes'] / 2**30:.2f} GiB")
old, new = load(f"old-{rounds}"), load(f"new-{rounds}")
if old and new:
    ops = {}
    for side, r in (("old", old), ("new", new)):
        for o in r.get("ops", []):
            ops.setdefault(o["op"], {})[side] = o
    print(f"  {'op':<32} {'old ms':>9} {'calls':>6} {'new ms':>9} {'calls':>6}")
    for op, s in sorted(ops.items(), key=lambda kv: -max(v["total_ms"] for v in kv[1].values())):
        cell = lambda v: f"{v['total_ms']:9.2f} {v['calls']:6d}" if v else f"{'-':>9} {'-':>6}"
        print(f"  {op:<32} {cell(s.get('old'))} {cell(s.get('new'))}")
PY
exit $status
