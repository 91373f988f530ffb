// Validates the Prometheus operator resources (ServiceMonitor, PodMonitor, Probe, PrometheusRule)
// in rendered Kubernetes YAML against the CRD schemas that @kubernetes-models/prometheus-
// operator carries; kubernetes-validate knows only built-in kinds.
// scripts/packaging-test.sh copies this file next to its node_modules and runs
//   node validate-crds.mjs FILE...
import fs from "node:fs";
import yaml from "js-yaml";
import { PodMonitor, Probe, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = { ServiceMonitor, PodMonitor, Probe, PrometheusRule };
let failures = 0;
let validated = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Model = models[doc.kind];
    if (!Model) {
      failures++;
      console.error(`${file}: ${doc.kind}: no schema for this kind`);
      continue;
    }
    try {
      new Model(doc).validate();
      validated++;
    } catch (e) {
      failures++;
      console.error(`${file}: ${doc.kind}/${doc.metadata?.name}: ${e.message}`);
    }
  }
}
console.log(`prometheus-operator resources: ${validated} valid, ${failures} invalid`);
process.exit(failures || !validated ? 1 : 0);
