// Validates the custom resources in rendered manifests against the schemas
// of their CRDs (cert-manager, Sealed Secrets, Prometheus Operator) as the
// @kubernetes-models packages ship them. A custom kind with no schema here
// fails: adding one means adding its package.
//
//   node check-crds.mjs rendered.yaml...
import fs from 'node:fs';
import * as yaml from 'js-yaml';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { SealedSecret } from
  '@kubernetes-models/sealed-secrets/bitnami.com/v1alpha1/SealedSecret';
import { ServiceMonitor } from
  '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PrometheusRule } from
  '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';

const models = {
  'cert-manager.io/v1 Certificate': Certificate,
  'bitnami.com/v1alpha1 SealedSecret': SealedSecret,
  'monitoring.coreos.com/v1 ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1 PrometheusRule': PrometheusRule,
};
// Kinds kubernetes-validate checks; everything else must be in `models`.
const builtIn = /^(v1|apps\/v1|policy\/v1|networking\.k8s\.io\/v1) /;

let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, 'utf8'))) {
    if (!doc) continue;
    const key = `${doc.apiVersion} ${doc.kind}`;
    const name = `${file}: ${key} ${doc.metadata?.name}`;
    const Model = models[key];
    if (!Model) {
      if (!builtIn.test(key)) {
        console.log(`FAIL ${name}: no schema for this kind`);
        failures += 1;
      }
      continue;
    }
    try {
      new Model(doc).validate();
      checked += 1;
    } catch (error) {
      console.log(`FAIL ${name}: ${error.message}`);
      failures += 1;
    }
  }
}
console.log(`custom resources: ${checked} valid, ${failures} failed`);
process.exit(failures === 0 && checked > 0 ? 0 : 1);
