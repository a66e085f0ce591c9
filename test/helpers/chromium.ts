import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (.ci/run installs it); playwright-core drives it, never its own download. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless Chromium as this machine needs it: without the background-networking switches it
 * keeps trying to reach Google's hosts, which the closed network refuses.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
