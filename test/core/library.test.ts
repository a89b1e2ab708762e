import assert from 'node:assert/strict';
import { z } from 'zod';
import { pino } from 'pino';
import * as passgate from '../../ext-authz/src/index.js';
import { authzClient, check, httpCheck } from '../support/service.js';

describe('passgate as a library', () => {
  it('embeds the service with a custom stage type', async () => {
    const schema = z.strictObject({ type: z.literal('lib-tenant'), header: z.string() });
    const tenant: passgate.StageDefinition<z.infer<typeof schema>> = {
      type: 'lib-tenant',
      schema,
      description: 'library test: copy a header into x-passgate-tenant',
      create: (o) => ({
        type: 'lib-tenant',
        run: (ctx) => {
          const v = ctx.request.headers[o.header];
          if (v === undefined) return passgate.deny(400, 'tenant_required');
          ctx.setUpstreamHeader('x-passgate-tenant', v);
          return passgate.CONTINUE;
        },
      }),
    };
    // An embedder's capability: passed in, never registered globally.
    const lib: passgate.Capability<undefined> = { name: 'lib', stages: [tenant], prepare: () => passgate.STATELESS };
    const composition = passgate.compose([lib]);
    const config = passgate.parseConfigText(
      'gateways:\n  public:\n    kind: public\n    routes:\n      - name: all\n        stages: [{ type: lib-tenant, header: x-tenant }]\ndefaultGateway: public\n',
      'lib.yaml',
      composition,
    );
    const svc = await passgate.PassgateService.start({ config, capabilities: [lib], grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    const client = authzClient(svc.grpcPort);
    try {
      const ok = await check(client, httpCheck({ headers: { 'x-tenant': 'acme', 'x-passgate-tenant': 'forged' } }));
      const set = ok.ok_response?.headers?.find((h) => h.header?.key === 'x-passgate-tenant');
      assert.equal(set?.header?.value, 'acme');
      const missing = await check(client, httpCheck({}));
      assert.equal(JSON.parse(missing.denied_response!.body!).reason, 'tenant_required');
    } finally {
      client.close();
      await svc.stop(500);
    }
  });
});
