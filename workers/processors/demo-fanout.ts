import { demoFanout } from "../../src/jobs/definitions/demo-fanout.ts";
import { defineProcessor } from "../processor.ts";

export default defineProcessor(demoFanout, async ({ label }, { childrenValues }) => {
  const values = Object.values(await childrenValues());
  const steps = values.reduce<number>(
    (sum, v) => sum + (typeof (v as { steps?: unknown })?.steps === "number" ? (v as { steps: number }).steps : 0),
    0,
  );
  return { label: label ?? null, children: values.length, steps };
});
