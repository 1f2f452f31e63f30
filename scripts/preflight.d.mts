/** True when `version` ("v24.15.0" or "24.15.0") is one this project runs on. */
export function supportedNode(version: string): boolean;
/** The supported versions, in words. */
export const NEEDED: string;
/** The paragraph printed when the running Node is too old. */
export function tooOldMessage(version: string): string;
