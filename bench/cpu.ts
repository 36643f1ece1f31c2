import { readFileSync } from 'node:fs';

/**
 * CPU time from a Linux /proc stat file, ms (NaN elsewhere): the calling thread's by default, or a process's
 * (`/proc/<pid>/stat`) or one of its threads' (`/proc/<pid>/task/<tid>/stat`).
 */
export function threadCpuMs(file = '/proc/thread-self/stat'): number {
  try {
    // Fields after the parenthesised comm: utime is the 12th, stime the 13th, in clock ticks (100 Hz).
    const stat = readFileSync(file, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}
