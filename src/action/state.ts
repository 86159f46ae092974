// What main hands to post through the Actions state, typed. Post may run after main
// failed half-way, so every field but the version is optional.
import * as core from '@actions/core';

/** The daemon.json change main made, so that post can undo exactly it. */
export interface DockerChange {
  path: string;
  /** The file's bytes before (base64), or null when it did not exist. */
  original: string | null;
  /** The bytes main wrote (base64). */
  written: string;
  /** The mirror and insecure-registry entries main added. */
  mirror: string;
  insecure: string[];
  reload: ReloadMethod;
}

/** How dockerd is told to re-read its configuration. */
export type ReloadMethod = { kind: 'systemd'; sudo: boolean } | { kind: 'pid'; pidFile: string; sudo: boolean };

/** Whether main pointed a client (docker, containerd) at the cache, for the summary. */
export interface ClientSetup {
  configured: boolean;
  /** What was done, or why not (one sentence). */
  detail: string;
}

/** The state main saves. */
export interface ActionState {
  version: 1;
  pid?: number;
  registryUrl?: string;
  cacheUrl?: string;
  storage?: string;
  logFile?: string;
  statsFile?: string;
  summary?: boolean;
  docker?: DockerChange;
  /** hosts.toml files main wrote, then the directories it created for them (`dir/`), for post to remove. */
  containerdFiles?: string[];
  startedAtMs?: number;
  persist?: PersistState;
  /** What main did about docker's registry mirror (unset: configure-docker was false). */
  dockerSetup?: ClientSetup;
  /** What main did about containerd's hosts.toml (unset: configure-containerd was false). */
  containerdSetup?: ClientSetup;
}

/** What main did with the Actions cache and what post should do. */
export interface PersistState {
  /** The restored index (also what the server imported). */
  indexFile: string;
  restoredKey?: string;
  restoreSeconds: number;
  save: boolean;
  /** The `save` input as given (the summary says why nothing was saved). */
  saveMode?: 'auto' | 'true' | 'false';
  /** Packs were restored in the background from the start (the `prefetch` input). */
  prefetch?: boolean;
  keyPrefix: string;
  maxSaveBytes: number;
  /** The job's matrix values as JSON (the `matrix` input), part of the index key. */
  matrix?: string;
  /** Images pushed to the :5000 registry are saved too (the `persist-registry` input). */
  persistRegistry?: boolean;
  /** The service failed or did not answer at the start: post saves nothing. */
  unavailable?: boolean;
}

const KEY = 'regcache';

/** Saves the state for post (call again as it grows: the last call wins). */
export function saveState(state: ActionState): void {
  core.saveState(KEY, JSON.stringify(state));
}

/** The state main saved, or an empty one when main saved nothing. */
export function loadState(): ActionState {
  const raw = core.getState(KEY);
  if (!raw) return { version: 1 };
  try {
    return JSON.parse(raw) as ActionState;
  } catch {
    return { version: 1 };
  }
}
