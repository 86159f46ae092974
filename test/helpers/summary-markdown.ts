// Reads a job summary as GitHub-flavoured markdown (with `marked`, the parser the render script
// uses too): its headline, its tables as the text a reader sees in each cell, its code spans,
// its mermaid pie; and checks what a reader would trip over: a table row with another column
// count than its header (checked on the raw lines: marked pads and cuts rows silently), a full
// 64-hex digest, a raw `w=` rate-limit value, a backslash shown inside a code span, escapes
// that do not give back the text they escaped.
import assert from 'node:assert/strict';
import { marked, type Token, type Tokens } from 'marked';

/** A table: header cells and rows, as the text a reader sees. */
export interface ParsedTable {
  header: string[];
  rows: string[][];
}

/** A parsed summary. */
export interface ParsedSummary {
  /** The first bold paragraph's text. */
  headline: string;
  tables: ParsedTable[];
  codeSpans: string[];
  /** The mermaid pie's slices, label -> value, when there is one. */
  pie: Record<string, number> | undefined;
  /** `- Label: value` list items (the Actions cache section), label -> value as written. */
  items: Record<string, string>;
}

/** The text a reader sees in inline tokens (escapes resolved, code spans' content as is). */
export function inlineText(tokens: readonly Token[] | undefined): string {
  return (tokens ?? [])
    .map((t) => {
      if (t.type === 'codespan') return (t as Tokens.Codespan).text.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'");
      if (t.type === 'escape') return (t as Tokens.Escape).text;
      if (t.type === 'html') return (t as Tokens.HTML).raw;
      if ('tokens' in t && t.tokens) return inlineText(t.tokens);
      return decodeEntities((t as { text?: string }).text ?? t.raw);
    })
    .join('');
}

function decodeEntities(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#124;/g, '|').replace(/&#96;/g, '`').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
}

function walk(tokens: readonly Token[], visit: (t: Token) => void): void {
  for (const t of tokens) {
    visit(t);
    if (t.type === 'table') {
      const tt = t as Tokens.Table;
      for (const c of [...tt.header, ...tt.rows.flat()]) walk(c.tokens, visit);
    }
    if ('tokens' in t && t.tokens) walk(t.tokens, visit);
    if (t.type === 'list') for (const i of (t as Tokens.List).items) walk([i as Token, ...i.tokens], visit);
  }
}

/** Parses a summary's markdown. */
export function parseSummary(md: string): ParsedSummary {
  const tokens = marked.lexer(md);
  const tables: ParsedTable[] = [];
  const codeSpans: string[] = [];
  let headline = '';
  let pie: Record<string, number> | undefined;
  const items: Record<string, string> = {};
  walk(tokens, (t) => {
    if (t.type === 'table') {
      const tt = t as Tokens.Table;
      tables.push({ header: tt.header.map((c) => inlineText(c.tokens)), rows: tt.rows.map((r) => r.map((c) => inlineText(c.tokens))) });
    } else if (t.type === 'codespan') {
      codeSpans.push((t as Tokens.Codespan).text);
    } else if (t.type === 'strong' && !headline) {
      headline = inlineText((t as Tokens.Strong).tokens);
    } else if (t.type === 'code' && (t as Tokens.Code).lang === 'mermaid') {
      pie = {};
      for (const m of (t as Tokens.Code).text.matchAll(/^\s*"([^"]+)"\s*:\s*([\d.]+)\s*$/gm)) pie[m[1]!] = Number(m[2]);
    } else if (t.type === 'list_item') {
      const m = /^- ([^:]+): (.*)$/s.exec(t.raw.trim());
      if (m) items[m[1]!] = m[2]!.trim();
    }
  });
  return { headline, tables, codeSpans, pie, items };
}

/** Cells of a raw table line, split on the pipes GFM splits on (not `\|`). */
export function rawCells(line: string): string[] {
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/);
}

/** The checks every summary must pass (see the header comment). */
export function assertWellFormed(md: string): void {
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('|') || !lines[i + 1]?.startsWith('|---') && !lines[i + 1]?.startsWith('|:-')) continue;
    const columns = rawCells(lines[i]!).length;
    assert.ok(rawCells(lines[i]!).some((c) => c.trim() !== ''), `a table header with no title: ${lines[i]}`);
    for (let j = i + 1; j < lines.length && lines[j]!.startsWith('|'); j++) {
      assert.equal(rawCells(lines[j]!).length, columns, `row has the header's ${columns} columns:\n${lines[i]}\n${lines[j]}`);
    }
  }
  assert.doesNotMatch(md, /[0-9a-f]{64}/, 'no full 64-hex digest');
  assert.doesNotMatch(md, /\bw=\d/, 'no raw w= rate-limit value');
  for (const span of parseSummary(md).codeSpans) {
    assert.doesNotMatch(span, /\\[\\`*_[\]#!~<>&]/, `no backslash escape shown inside a code span: ${span}`);
  }
}
