// Section `action` (issue 4): the Action's own overhead. The bundled steps (dist/main.js, then
// dist/post.js) run exactly as the runner runs them, through the Actions runner stand-in of the
// tests (test/helpers/actions-runner.ts: INPUT_*, GITHUB_STATE, STATE_* for post, RUNNER_TEMP,
// file commands), on the bench's `--node` (Node 24 when given, as action.yml asks for), pinned
// to the servers' CPU. Nothing is pulled; there is no Actions cache service in the job (no
// ACTIONS_* variables; `restore: false` as well), and docker and containerd are left alone
// (`configure-docker: false`, `configure-containerd: false`: both are inputs), so what is timed
// is starting regcache detached, waiting for both ports, outputs, then stopping it and writing
// the job summary. Ports are 0 (free ones), so that a busy 5000/5001 on the machine does not
// fail the step. Every repetition is a fresh job dir (fresh storage).
//   - main start -> both ports listening: the server's ready file's mtime (written once both
//     ports listen) minus the moment the bench spawned main;
//   - main step: spawn to exit (main has then seen both ports answer GET /v2/ and set outputs);
//   - main + post: the two steps' wall times added (the gap between them is the runner's, not ours).
// Then the same job with an Actions cache service that is down from the start (the stand-in of
// test/helpers/actions-cache-service.ts answering every call 503, as a failing service does;
// `restore` and `save` true): what main + post spend on the dead service is the difference
// from the job without one (issue 11: at most 3 s).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ActionsJob, sandboxInputs, type StepResult } from '../test/helpers/actions-runner.js';
import { startActionsCacheService, type ActionsCacheService } from '../test/helpers/actions-cache-service.js';
import type { BenchContext, Row, Section } from './run.js';

/** Fresh jobs timed (medians reported). */
const REPS = 5;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function range(values: number[]): string {
  return `${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)} ms`;
}

function check(step: StepResult, what: string, warningsExpected = false): void {
  if (step.code !== 0 || step.errors.length > 0 || (!warningsExpected && step.warnings.length > 0)) {
    throw new Error(`${what} exited ${step.code} (errors ${JSON.stringify(step.errors)}, warnings ${JSON.stringify(step.warnings)})\nstdout:\n${step.stdout}\nstderr:\n${step.stderr}`);
  }
}

/** One job: main, nothing, post. Times in ms. */
interface JobTimes {
  ready: number;
  main: number;
  post: number;
  /** Spawn to main's first line of its own code (node start, bundle load): main's state `startedAtMs`. */
  load: number;
}

/** One job; with `downService`, a job whose Actions cache service fails every call from the start. */
async function timeJob(ctx: BenchContext, parent: string, downService?: ActionsCacheService): Promise<JobTimes> {
  const dir = await mkdtemp(join(parent, 'job-'));
  const job = new ActionsJob(dir, {
    node: resolve(ctx.node),
    ...(ctx.serverCpu !== undefined ? { wrapper: ['taskset', '-c', ctx.serverCpu] } : {}),
    inputs: {
      ...sandboxInputs(dir),
      'configure-docker': 'false',
      'configure-containerd': 'false',
      'log-level': 'warn',
      ...(downService ? { restore: 'true', save: 'true' } : { restore: 'false' }),
    },
    ...(downService ? { env: downService.env({ workspace: join(dir, 'workspace'), runnerTemp: join(dir, 'temp') }) } : {}),
  });
  try {
    const t0 = Date.now();
    const main = await job.main();
    check(main, 'main', !!downService);
    const readyAt = (await stat(join(job.runnerTemp, 'regcache', 'ready.json'))).mtimeMs;
    const startedAt = (JSON.parse(main.state.regcache ?? '{}') as { startedAtMs?: number }).startedAtMs ?? Number.NaN;
    const post = await job.post();
    check(post, 'post', !!downService);
    if (downService && !main.warnings.some((w) => /cache service/i.test(w))) throw new Error(`main did not warn about the down cache service:\n${main.stdout}`);
    if (!post.summary.includes('regcache')) throw new Error(`post wrote no job summary:\n${post.stdout}`);
    return { ready: readyAt - t0, main: main.durationMs, post: post.durationMs, load: startedAt - t0 };
  } finally {
    await job.stopLeftoverServer();
    await rm(dir, { recursive: true, force: true });
  }
}

export const actionSection: Section = {
  id: 'action',
  async run(ctx) {
    const parent = join(ctx.tmp, 'action');
    await mkdir(parent, { recursive: true });
    const runs: JobTimes[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      ctx.settle();
      ctx.log(`action: main + post, nothing pulled (job ${rep + 1} of ${REPS})`);
      runs.push(await timeJob(ctx, parent));
    }
    const svc = await startActionsCacheService({ down: 'unavailable' });
    const down: JobTimes[] = [];
    try {
      for (let rep = 0; rep < REPS; rep++) {
        ctx.settle();
        ctx.log(`action: main + post, the Actions cache service down from the start (job ${rep + 1} of ${REPS})`);
        down.push(await timeJob(ctx, parent, svc));
      }
    } finally {
      await svc.stop();
    }
    const downTotal = down.map((r) => r.main + r.post);
    const ready = runs.map((r) => r.ready);
    const main = runs.map((r) => r.main);
    const post = runs.map((r) => r.post);
    const total = runs.map((r) => r.main + r.post);
    const how = `median of ${REPS} fresh jobs (${range(ready)} / ${range(main)} / ${range(post)} / ${range(total)} for the four rows); node ${execFileSync(ctx.node, ['--version'], { encoding: 'utf8' }).trim()}`;
    return [
      {
        section: 'action',
        workload: 'main start -> both ports listening (server ready file), no restore',
        unit: 'ms',
        regcache: median(ready),
        target: { kind: 'max', max: 1000 },
        note: how,
      },
      {
        section: 'action',
        workload: 'main step, start -> exit (both ports answered, outputs set), no restore',
        unit: 'ms',
        regcache: median(main),
        target: { kind: 'max', max: 1000 },
        note: `of which node start + main.js load ${median(runs.map((r) => r.load)).toFixed(0)} ms, then server spawn -> ready file ${median(runs.map((r) => r.ready - r.load)).toFixed(0)} ms, then ports confirmed + outputs + exit ${median(runs.map((r) => r.main - r.ready)).toFixed(0)} ms (medians); configure-docker, configure-containerd false; no Actions cache service`,
      },
      {
        section: 'action',
        workload: '  post step (stop server, job summary)',
        unit: 'ms',
        regcache: median(post),
      },
      {
        section: 'action',
        workload: 'main + post, nothing pulled',
        unit: 'ms',
        regcache: median(total),
        target: { kind: 'max', max: 2000 },
        note: 'sum of the two steps\' wall times, per job',
      },
      {
        section: 'action',
        workload: 'main + post with the Actions cache service down from the start, beyond the job without one',
        unit: 'ms',
        regcache: Math.max(0, median(downTotal) - median(total)),
        target: { kind: 'max', max: 3000 },
        note: `main + post ${median(downTotal).toFixed(0)} ms (${range(downTotal)}; main ${median(down.map((r) => r.main)).toFixed(0)}, post ${median(down.map((r) => r.post)).toFixed(0)}) against ${median(total).toFixed(0)} ms without a service; every Twirp call answered 503`,
      },
    ];
  },
};
