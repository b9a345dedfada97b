#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the wheels the GPU machine's image lacks for the GPU check
# (benchmarks/gpu_check.sh installs them from .whl/ into /tmp/site there). Python 3.12, x86-64 Linux:
# the device image's interpreter. About 26 MB; .whl/ must be git-ignored (.git/info/exclude) and carried.
# The image already holds torch, torchvision, numpy, pillow, scikit-image, tqdm, pytest, pytest-xdist,
# hypothesis and psutil (as the lent GPU machine lists its image), so they
# are not fetched; the list below is what the tests and the pages need beyond them.
set -eu
mkdir -p .whl
PKGS="anywidget psygnal comm ipywidgets widgetsnbextension jupyterlab_widgets plotly ipykernel ipython
ipython_pygments_lexers traitlets jedi parso matplotlib-inline pexpect ptyprocess prompt_toolkit wcwidth
stack-data asttokens executing pure_eval jupyter_client jupyter_core platformdirs pyzmq tornado debugpy
nest-asyncio2 nbformat nbclient fastjsonschema jsonschema jsonschema-specifications referencing rpds-py"
PLAT=""
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_26_x86_64 \
         manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  PLAT="$PLAT --platform $p"
done
for pkg in $PKGS; do
  # the versions this environment runs (pip freeze), else the newest
  spec=$(python3 -m pip freeze 2>/dev/null | grep -i "^${pkg//_/[-_]}==" || true)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT \
    -d .whl "${spec:-$pkg}"
done
ls .whl | wc -l
du -sh .whl
