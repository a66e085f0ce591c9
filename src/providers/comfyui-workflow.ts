/** darkroom's `{{placeholder}}` values in a ComfyUI workflow template (see ComfyUIProviderOptions.workflow). */
import { isRecord } from './http-util.ts';
import type { ProviderCall } from './types.ts';

/** Replaces `{{name}}` placeholders in every string of a workflow template. */
export function fillWorkflow(template: unknown, values: Record<string, string | number>): unknown {
  if (typeof template === 'string') {
    const whole = /^\{\{(\w+)\}\}$/.exec(template);
    if (whole?.[1] !== undefined && Object.hasOwn(values, whole[1])) return values[whole[1]];
    return template.replace(/\{\{(\w+)\}\}/g, (placeholder, name: string) =>
      Object.hasOwn(values, name) ? String(values[name]) : placeholder,
    );
  }
  if (Array.isArray(template)) return template.map((item) => fillWorkflow(item, values));
  if (isRecord(template))
    return Object.fromEntries(
      Object.entries(template).map(([key, value]) => [key, fillWorkflow(value, values)]),
    );
  return template;
}

/** Placeholders darkroom fills itself: the prompt, seed, batch size and every input image. */
function isOwnPlaceholder(name: string): boolean {
  return name === 'prompt' || name === 'seed' || name === 'batch_size' || name.startsWith('input_');
}

export function placeholderValues(
  call: ProviderCall,
  uploaded: Array<{ name: string; role: string }>,
): Record<string, string | number> {
  const values: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(call.params)) {
    // darkroom's own names are never taken from params: `input_person` naming another user's upload made
    // ComfyUI load that user's photo.
    if (isOwnPlaceholder(name)) continue;
    if (typeof value === 'string' || typeof value === 'number') values[name] = value;
  }
  uploaded.forEach((file, index) => {
    values[`input_image_${index + 1}`] = file.name;
    values[`input_${file.role}`] ??= file.name;
  });
  if (uploaded[0]) values.input_image = uploaded[0].name;
  values.prompt = call.prompt;
  values.seed = call.seed;
  values.batch_size = call.count;
  return values;
}
