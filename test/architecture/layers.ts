/**
 * The dependency rules of layers.json, checked with madge over the real
 * import graph (type imports included): no import cycle, no import from a
 * lower layer into a higher one, no import between two folders of an
 * isolated layer. Returns one line per problem, empty when fine.
 */
import { relative, resolve } from 'node:path';
import madge from 'madge';

export interface Layer {
  readonly name: string;
  readonly paths: readonly string[];
  readonly isolated?: boolean;
}

export interface LayerConfig {
  readonly roots: readonly string[];
  readonly layers: readonly Layer[];
  /** Sideways imports allowed in an isolated layer: [from unit, to unit], for a capability that `needs` another. */
  readonly allowSideways?: ReadonlyArray<readonly [string, string]>;
}

interface Placed {
  readonly index: number;
  readonly layer: Layer;
  /** The matching path prefix: the unit inside an isolated layer. */
  readonly unit: string;
}

function place(file: string, config: LayerConfig): Placed | undefined {
  let best: Placed | undefined;
  config.layers.forEach((layer, index) => {
    for (const p of layer.paths) {
      const match = p.endsWith('/') ? file.startsWith(p) : file === p;
      if (match && (best === undefined || p.length > best.unit.length)) best = { index, layer, unit: p };
    }
  });
  return best;
}

export async function checkLayers(baseDir: string, config: LayerConfig, tsConfig?: string): Promise<string[]> {
  const result = await madge(
    config.roots.map((r) => resolve(baseDir, r)),
    {
      baseDir,
      fileExtensions: ['ts'],
      excludeRegExp: [/\.d\.ts$/, /node_modules/],
      ...(tsConfig ? { tsConfig } : {}),
      detectiveOptions: { ts: { skipTypeImports: false, skipAsyncImports: false }, es6: { skipTypeImports: false, skipAsyncImports: false } },
    },
  );
  const problems: string[] = [];
  for (const cycle of result.circular()) problems.push(`import cycle: ${[...cycle, cycle[0]].join(' -> ')}`);
  const graph = result.obj();
  for (const [from, deps] of Object.entries(graph)) {
    const file = relative(baseDir, resolve(baseDir, from)).split('\\').join('/');
    const a = place(file, config);
    if (a === undefined) {
      problems.push(`${file}: in no layer of the layer config; add its folder to one`);
      continue;
    }
    for (const dep of deps) {
      const target = relative(baseDir, resolve(baseDir, dep)).split('\\').join('/');
      const b = place(target, config);
      if (b === undefined) continue; // reported as its own file
      if (b.index > a.index) problems.push(`upward import: ${file} (${a.layer.name}) imports ${target} (${b.layer.name})`);
      else if (b.index === a.index && a.layer.isolated && a.unit !== b.unit && !config.allowSideways?.some(([f, t]) => f === a.unit && t === b.unit)) {
        problems.push(`sideways import: ${file} (${a.unit}) imports ${target} (${b.unit}); ${a.layer.name} meet only in a higher layer`);
      }
    }
  }
  return problems;
}
