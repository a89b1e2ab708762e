// tsc compiles TypeScript only; the embedded default config ships beside the compiled loader.
import { copyFileSync, mkdirSync } from 'node:fs';
mkdirSync('dist/ext-authz/src/config', { recursive: true });
copyFileSync('ext-authz/src/config/default.yaml', 'dist/ext-authz/src/config/default.yaml');
