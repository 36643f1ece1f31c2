# Sourced by the GPU-box loop drivers (gpu-loop.sh, gpu-scenarios.sh): puts Node and the server's
# node_modules in place from the carried bundle (.loopnode/, scripts/loop/pack-node.sh), since the GPU box
# has no Node. Needs ROOT (the repo), WORK (a scratch dir) and a `say` function; returns 2 with a reason.
loop_node_env() {
  # tar -J needs the xz binary; Python's lzma does the same where it is missing.
  untar_xz() { tar -C "$2" -xJf "$1" 2>/dev/null || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$1" "$2"; }
  # A checkout with its own node_modules and a node on PATH (a dev box) runs as it is; otherwise the bundle's
  # Node goes on PATH, also when node_modules was unpacked from the bundle by an earlier run on this box.
  if [ -d "$ROOT/node_modules" ] && [ -z "${LOOP_USE_BUNDLE:-}" ] && command -v node >/dev/null; then return 0; fi
  [ -f "$ROOT/.loopnode/node.tar.xz" ] || { say "no .loopnode/: run scripts/loop/pack-node.sh here and carry .loopnode"; return 2; }
  [ -x "$WORK/bin/node" ] || untar_xz "$ROOT/.loopnode/node.tar.xz" "$WORK"
  [ -d "$ROOT/node_modules" ] || untar_xz "$ROOT/.loopnode/modules.tar.xz" "$ROOT"
  export PATH="$WORK/bin:$PATH"
  # onnxruntime-node's native library comes from the box's Python onnxruntime wheel (same C API version).
  local ort_lib="$ROOT/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
  if [ ! -e "$ort_lib" ]; then
    local node_ort py_ort
    node_ort=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ROOT/node_modules/onnxruntime-node/package.json" | head -1)
    py_ort=$(python3 -c 'import onnxruntime as o, os; print(o.__version__, os.path.dirname(o.__file__))' 2>/dev/null) || py_ort=""
    [ "${py_ort%% *}" = "$node_ort" ] || { say "need Python onnxruntime $node_ort for its libonnxruntime (found: ${py_ort:-none})"; return 2; }
    ln -sf "$(ls "${py_ort#* }"/capi/libonnxruntime.so.1* | head -1)" "$ort_lib"
  fi
  # The natives were compiled against GLIBCXX_3.4.29; add the bundle's libstdc++ only if the box's is older.
  local sys_stdcxx
  sys_stdcxx=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
  if [ -z "$sys_stdcxx" ] || ! grep -qa 'GLIBCXX_3\.4\.29' "$sys_stdcxx"; then
    mkdir -p "$WORK/lib" && python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$ROOT/.loopnode/libstdcxx/libstdc++.so.6.xz" "$WORK/lib/libstdc++.so.6"
    export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
