/**
 * The deploy steps in docs/deploy.md and the README's "Deploy to a mesh" match the files
 * they name: every path applied or installed exists (and is a kustomization where
 * `-k` needs one), every npm script exists, and the provider settings, drain figures
 * and replica counts the guide quotes are the ones the manifests carry. The Dockerfile
 * builds the image the Deployment expects (uid, entry point, ports).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { meshProviders } from '../../istio/checks/checks.js';
import { parseYamlDocs, renderKustomize, ROOT, type K8sObject } from '../../istio/checks/load.js';

const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
/** The README's deploy section (up to the next level-2 heading). */
const readmeDeploy = (): string => /\n## Deploy to a mesh\n[\s\S]*?(?=\n## |$)/.exec(read('README.md'))?.[0] ?? '';
const DOCS: Record<string, () => string> = { 'docs/deploy.md': () => read('docs/deploy.md'), 'README.md "Deploy to a mesh"': readmeDeploy };
/** Shell lines of the ```sh blocks. */
const shellLines = (md: string): string[] => [...md.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'));
const operator = (): K8sObject => parseYamlDocs(read('istio/mesh/istio-operator.yaml'), 'istio-operator.yaml')[0]!;

describe('deploy docs match the manifests', function () {
  this.timeout(30_000);

  for (const [doc, text] of Object.entries(DOCS)) {
    it(`${doc}: every kubectl -k / -f and istioctl -f path exists`, () => {
      const lines = shellLines(text());
      let seen = 0;
      for (const line of lines) {
        for (const m of line.matchAll(/(?:kubectl (?:apply -k|kustomize)|istioctl install (?:-y )?-f) (\S+)/g)) {
          const path = join(ROOT, m[1]!);
          seen++;
          assert.ok(existsSync(path), `${doc}: "${m[0]}" names ${m[1]}, which does not exist`);
          if (statSync(path).isDirectory()) assert.ok(existsSync(join(path, 'kustomization.yaml')), `${doc}: ${m[1]} has no kustomization.yaml`);
        }
      }
      assert.ok(seen >= 3, `${doc}: only ${seen} apply/install steps found`);
    });

    it(`${doc}: every npm script it runs exists`, () => {
      const scripts = Object.keys(JSON.parse(read('package.json')).scripts as Record<string, string>);
      const used = [...text().matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!);
      assert.ok(used.length > 0);
      for (const s of used) assert.ok(scripts.includes(s), `${doc}: npm run ${s} is not a script in package.json`);
    });
  }

  it('docs/deploy.md quotes the mesh provider exactly as istio-operator.yaml declares it', () => {
    const block = /```yaml\n(extensionProviders:[\s\S]*?)```/.exec(read('docs/deploy.md'));
    assert.ok(block, 'docs/deploy.md has no extensionProviders yaml block');
    assert.deepEqual(parse(block[1]!).extensionProviders, meshProviders(operator()));
  });

  it('the Dockerfile builds what the Deployment runs: non-root uid, entry point, ports, build script', () => {
    const df = read('Dockerfile');
    const user = /^USER (\d+):(\d+)$/m.exec(df);
    assert.ok(user, 'Dockerfile: USER must be a numeric uid:gid (runAsNonRoot cannot verify a name)');
    assert.notEqual(user[1], '0');
    const [deployment] = renderKustomize(join(ROOT, 'k8s/overlays/prod')).filter((o) => o.kind === 'Deployment' && o.metadata.name === 'passgate');
    const pod = deployment!.spec.template.spec;
    assert.deepEqual([pod.securityContext.runAsUser, pod.securityContext.runAsGroup], [Number(user[1]), Number(user[2])]);
    const entry = /^ENTRYPOINT \["node", "dist\/(.+)\.js"\]$/m.exec(df);
    assert.ok(entry && existsSync(join(ROOT, `${entry[1]}.ts`)), `Dockerfile: ENTRYPOINT ${entry?.[1]}.js has no TypeScript source`);
    const exposed = /^EXPOSE (.+)$/m.exec(df)![1]!.split(/\s+/).map(Number);
    assert.deepEqual(exposed, pod.containers[0].ports.map((p: any) => p.containerPort));
    const scripts = JSON.parse(read('package.json')).scripts as Record<string, string>;
    for (const m of df.matchAll(/npm run ([\w:-]+)/g)) assert.ok(scripts[m[1]!], `Dockerfile runs npm run ${m[1]}, which package.json lacks`);
    const stages = df.match(/^FROM /gm) ?? [];
    assert.ok(stages.length >= 2, 'Dockerfile: multi-stage (build, then a runtime without dev dependencies)');
  });

  it('docs/deploy.md drain and scale figures are the manifests and config values', () => {
    const md = read('docs/deploy.md').replace(/\s+/g, ' ');
    const drain = /`server\.shutdownGraceMs` \((\d+) s\) \+ preStop sleep \((\d+) s\) must stay below `terminationGracePeriodSeconds` \((\d+) s\)/.exec(md);
    const scale = /prod (\d+) to (\d+) replicas \(HPA at (\d+) % CPU\), spread over zones with `(\w+)`; dev (\d+) to (\d+)\./.exec(md);
    assert.ok(drain, 'drain sentence not found');
    assert.ok(scale, 'scale sentence not found');
    const [dev, prod] = ['dev', 'prod'].map((o) => renderKustomize(join(ROOT, 'k8s/overlays', o)));
    const of = (objs: K8sObject[], kind: string) => objs.find((o) => o.kind === kind && o.metadata.name === 'passgate')!;
    const pod = of(prod!, 'Deployment').spec.template.spec;
    const cm = prod!.find((o) => o.kind === 'ConfigMap')!;
    assert.equal(Number(drain[1]) * 1000, parse(cm.data['config.yaml']).server.shutdownGraceMs);
    assert.deepEqual(pod.containers[0].lifecycle.preStop.exec.command, ['/bin/sleep', drain[2]]);
    assert.equal(pod.terminationGracePeriodSeconds, Number(drain[3]));
    const [prodHpa, devHpa] = [of(prod!, 'HorizontalPodAutoscaler').spec, of(dev!, 'HorizontalPodAutoscaler').spec];
    assert.deepEqual([prodHpa.minReplicas, prodHpa.maxReplicas, prodHpa.metrics[0].resource.target.averageUtilization], scale.slice(1, 4).map(Number));
    assert.equal(pod.topologySpreadConstraints.find((t: any) => t.topologyKey === 'topology.kubernetes.io/zone').whenUnsatisfiable, scale[4]);
    assert.deepEqual([devHpa.minReplicas, devHpa.maxReplicas], scale.slice(5, 7).map(Number));
  });
});
