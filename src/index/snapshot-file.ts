import { type FileHandle, open } from 'node:fs/promises';
import { totalmem } from 'node:os';

import { IndexSnapshotError } from './errors.js';

// hnswlib's on-disk format (HierarchicalNSW::saveIndex, hnswlib 0.8 as vendored by hnswlib-node 3):
//   header (96 bytes, little-endian, size_t = 8) ·
//   level-0 block: cur_element_count × size_data_per_element
//     each element = [links: u32 header + maxM0 × u32][vector: dim × f32][label: u64]
//   then, per element: u32 byte length + that many bytes of upper-level links.
// hnswlib's own loader checks little of this and mallocs max_elements × size_data_per_element from
// the header before reading, so a garbage header can abort the process (bad_alloc / OOM kill) and a
// dimension mismatch silently yields nonsense. Parsing it here first turns every such file into a
// clear error, and the same pass hands back the raw vectors the worker keeps for exact filtered search.
export const HEADER_BYTES = 96;
const DELETE_MARK = 0x01;

export interface SnapshotHeader {
  maxElements: number;
  count: number;
  sizeDataPerElement: number;
  labelOffset: number;
  offsetData: number;
  maxLevel: number;
  entryPoint: number;
  maxM: number;
  maxM0: number;
  M: number;
  efConstruction: number;
  dim: number;
}

export interface SnapshotContents {
  header: SnapshotHeader;
  /** Labels in internal-id order. */
  labels: Float64Array;
  /** count × dim, row i belongs to labels[i]; empty when not asked for. */
  vectors: Float32Array;
  /** 1 where the element is marked deleted. */
  deleted: Uint8Array;
}

function u64(buf: Buffer, off: number, name: string, path: string): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(path, `${name} out of range (${v})`);
  return Number(v);
}

function corrupt(path: string, why: string): IndexSnapshotError {
  return new IndexSnapshotError(`index snapshot ${path} is corrupt or truncated: ${why}; rebuild the index from the database`);
}

export function parseHeader(buf: Buffer, path: string, expectedDim: number, fileSize: number): SnapshotHeader {
  if (fileSize < HEADER_BYTES) throw corrupt(path, `file is ${fileSize} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  const offsetLevel0 = u64(buf, 0, 'offsetLevel0', path);
  const maxElements = u64(buf, 8, 'max_elements', path);
  const count = u64(buf, 16, 'cur_element_count', path);
  const sizeDataPerElement = u64(buf, 24, 'size_data_per_element', path);
  const labelOffset = u64(buf, 32, 'label_offset', path);
  const offsetData = u64(buf, 40, 'offsetData', path);
  const maxLevel = buf.readInt32LE(48);
  const entryPoint = buf.readUInt32LE(52);
  const maxM = u64(buf, 56, 'maxM', path);
  const maxM0 = u64(buf, 64, 'maxM0', path);
  const M = u64(buf, 72, 'M', path);
  const efConstruction = u64(buf, 88, 'ef_construction', path);

  if (offsetLevel0 !== 0) throw corrupt(path, 'bad level-0 offset');
  if (M < 1 || M > 100_000 || maxM !== M || maxM0 < M || maxM0 > 200_000)
    throw corrupt(path, `implausible M=${M} maxM=${maxM} maxM0=${maxM0}`);
  const linksLevel0 = maxM0 * 4 + 4;
  if (offsetData !== linksLevel0) throw corrupt(path, 'data offset does not match link size');
  const dataBytes = labelOffset - offsetData;
  if (dataBytes <= 0 || dataBytes % 4 !== 0 || sizeDataPerElement !== labelOffset + 8) throw corrupt(path, 'inconsistent element layout');
  const dim = dataBytes / 4;
  if (dim !== expectedDim) {
    throw new IndexSnapshotError(
      `index snapshot ${path} holds ${dim}-dimensional vectors, expected ${expectedDim}; rebuild the index from the database`,
    );
  }
  if (count > maxElements) throw corrupt(path, `element count ${count} exceeds capacity ${maxElements}`);
  // hnswlib allocates capacity × element size up front; refuse anything the machine cannot hold.
  if (maxElements * sizeDataPerElement > totalmem())
    throw corrupt(path, `capacity ${maxElements} would need more memory than the machine has`);
  if (count > 0 && (entryPoint >= count || maxLevel < 0 || maxLevel > 64)) throw corrupt(path, 'bad entry point');
  if (HEADER_BYTES + count * sizeDataPerElement + count * 4 > fileSize) {
    throw corrupt(path, `file is ${fileSize} bytes, too short for ${count} elements`);
  }
  return { maxElements, count, sizeDataPerElement, labelOffset, offsetData, maxLevel, entryPoint, maxM, maxM0, M, efConstruction, dim };
}

const CHUNK_BYTES = 8 << 20;

/** Validates a snapshot end to end and extracts labels, vectors (unless `vectors: false`) and delete marks in one sequential read. */
export async function readSnapshot(path: string, expectedDim: number, opts: { vectors?: boolean } = {}): Promise<SnapshotContents> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new IndexSnapshotError(`index snapshot ${path} cannot be opened: ${(err as Error).message}`);
  }
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(HEADER_BYTES);
    await fh.read(head, 0, HEADER_BYTES, 0);
    const header = parseHeader(head, path, expectedDim, size);
    const { count, sizeDataPerElement: sde, dim, offsetData, labelOffset, maxM } = header;

    const labels = new Float64Array(count);
    const withVectors = opts.vectors !== false;
    const vectors = new Float32Array(withVectors ? count * dim : 0);
    const deleted = new Uint8Array(count);
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / sde));
    const buf = Buffer.alloc(Math.min(count, perChunk) * sde);
    let pos = HEADER_BYTES;
    for (let start = 0; start < count; start += perChunk) {
      const n = Math.min(perChunk, count - start);
      const { bytesRead } = await fh.read(buf, 0, n * sde, pos);
      if (bytesRead !== n * sde) throw corrupt(path, 'level-0 block truncated');
      for (let i = 0; i < n; i++) {
        const base = i * sde;
        deleted[start + i] = (buf[base + 2] ?? 0) & DELETE_MARK;
        const label = Number(buf.readBigUInt64LE(base + labelOffset));
        labels[start + i] = label;
        // Copy through a Float32Array view only when aligned; Buffer pool offsets usually are not.
        if (!withVectors) continue;
        const row = (start + i) * dim;
        for (let d = 0; d < dim; d++) vectors[row + d] = buf.readFloatLE(base + offsetData + d * 4);
      }
      pos += n * sde;
    }

    // Upper-level link lists: each is a u32 length that must be a multiple of one level's size.
    const perLevel = maxM * 4 + 4;
    const tail = Buffer.alloc(CHUNK_BYTES);
    let tailStart = 0;
    let tailLen = 0;
    for (let i = 0; i < count; i++) {
      if (pos < tailStart || pos + 4 > tailStart + tailLen) {
        tailStart = pos;
        tailLen = (await fh.read(tail, 0, CHUNK_BYTES, pos)).bytesRead;
        if (tailLen < 4) throw corrupt(path, `link lists truncated at element ${i}`);
      }
      const len = tail.readUInt32LE(pos - tailStart);
      if (len % perLevel !== 0 || len / perLevel > header.maxLevel) throw corrupt(path, `bad link list length at element ${i}`);
      pos += 4 + len;
    }
    if (pos !== size) throw corrupt(path, pos > size ? 'link lists truncated' : `${size - pos} trailing bytes`);
    return { header, labels, vectors, deleted };
  } finally {
    await fh.close();
  }
}
