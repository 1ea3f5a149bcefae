#!/usr/bin/env bash
# The peers of benchmarks/samplers.py, in their own virtual environment (.bench-venv, gitignored), never in
# minigen's dependencies.
#
# .bench-venv sees minigen's environment (torch, numpy 2, diffusers, the editable minigen) through a .pth file
# and adds k-diffusion on top. k-diffusion is installed with --no-deps because its dependency dctorch pins
# numpy<2, which pip would satisfy by downgrading numpy and breaking minigen's [vision] extra; the sampling
# code needs none of that pin. Its `k_diffusion.sampling` then imports once an OpenAI `clip` module exists:
# benchmarks/_peer_stubs/clip is a stand-in that the benchmark (only) puts on sys.path.
#
# Usage: bash benchmarks/peers_env.sh [base venv, default .venv]
#        .bench-venv/bin/python benchmarks/samplers.py
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_VENV=${1:-.venv}
BENCH_VENV=.bench-venv

BASE_SITE=$("$BASE_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$BASE_VENV/bin/python" -m venv "$BENCH_VENV"
BENCH_SITE=$("$BENCH_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# minigen (editable) and its dependencies, shared, not copied: addsitedir also runs the base's .pth files
echo "import site; site.addsitedir('$BASE_SITE')" > "$BENCH_SITE/_minigen_base_env.pth"

PIP=("$BENCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --no-deps k-diffusion==0.1.1.post1 dctorch torchsde torchdiffeq jsonmerge clean-fid trampoline
"${PIP[@]}" jsonschema  # jsonmerge's one dependency that minigen's environment may lack
"$BASE_VENV/bin/python" -c "import diffusers" 2>/dev/null || "${PIP[@]}" diffusers

"$BENCH_VENV/bin/python" - <<'EOF'
import sys
sys.path.insert(0, "benchmarks/_peer_stubs")
import diffusers
import k_diffusion.sampling
import minigen
print("peers ready: k-diffusion", k_diffusion.__version__ if hasattr(k_diffusion, "__version__") else "0.1.1.post1",
      "| diffusers", diffusers.__version__, "| minigen from", minigen.__file__)
EOF
