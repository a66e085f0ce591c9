import { createHmac } from 'node:crypto';
import type { AlertRow } from '../store/alerts.ts';

/**
 * Each vendor's own webhook message format, so a notification lands as a readable message
 * in the group chat the operators already watch.
 */

export type ChannelType = 'generic' | 'wecom' | 'feishu' | 'dingtalk' | 'slack';

export interface AlertMessage {
  kind: 'firing' | 'resolved';
  alert: AlertRow;
}

export interface OutgoingRequest {
  url: string;
  body: string;
}

function title(m: AlertMessage): string {
  return `${m.kind === 'firing' ? '[FIRING]' : '[RESOLVED]'} darkroom ${m.alert.rule}${m.alert.key ? ` (${m.alert.key})` : ''}`;
}

function lines(m: AlertMessage): string[] {
  const out = [m.alert.summary, `fired at ${m.alert.fired_at.toISOString()}`];
  if (m.kind === 'resolved' && m.alert.resolved_at)
    out.push(`resolved at ${m.alert.resolved_at.toISOString()}`);
  return out;
}

/** Builds the request for one channel. `nowMs` stamps the Feishu and DingTalk signatures. */
export function formatAlert(
  type: ChannelType,
  channel: { url: string; secret?: string | undefined },
  m: AlertMessage,
  nowMs: number,
): OutgoingRequest {
  switch (type) {
    case 'generic':
      return {
        url: channel.url,
        body: JSON.stringify({
          source: 'darkroom',
          status: m.kind,
          rule: m.alert.rule,
          key: m.alert.key,
          value: m.alert.value,
          threshold: m.alert.threshold,
          summary: m.alert.summary,
          alert_id: m.alert.id,
          fired_at: m.alert.fired_at.toISOString(),
          resolved_at: m.alert.resolved_at?.toISOString() ?? null,
        }),
      };
    case 'wecom':
      // WeCom group robot (https://developer.work.weixin.qq.com/document/path/91770): markdown message,
      // `content` at most 4096 bytes; the answer is {"errcode":0,"errmsg":"ok"}.
      return {
        url: channel.url,
        body: JSON.stringify({
          msgtype: 'markdown',
          markdown: {
            content: `### ${title(m)}\n${lines(m)
              .map((l) => `> ${l}`)
              .join('\n')}`.slice(0, 4000),
          },
        }),
      };
    case 'feishu': {
      // Feishu custom bot (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): text
      // message; with signature verification, `timestamp` (s) and `sign` = base64(HMAC-SHA256 keyed
      // with "timestamp\nsecret" over an empty message). The answer is {"code":0,"msg":"success"}.
      const body: Record<string, unknown> = {
        msg_type: 'text',
        content: { text: [title(m), ...lines(m)].join('\n') },
      };
      if (channel.secret) {
        const timestamp = String(Math.floor(nowMs / 1000));
        body.timestamp = timestamp;
        body.sign = createHmac('sha256', `${timestamp}\n${channel.secret}`).update('').digest('base64');
      }
      return { url: channel.url, body: JSON.stringify(body) };
    }
    case 'dingtalk': {
      // DingTalk custom robot (https://open.dingtalk.com/document/robots/custom-robot-access): markdown
      // message; with signing, `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256 keyed with the
      // secret over "timestamp\nsecret")) in the query. The answer is {"errcode":0,"errmsg":"ok"}.
      let url = channel.url;
      if (channel.secret) {
        const timestamp = String(nowMs);
        const sign = createHmac('sha256', channel.secret)
          .update(`${timestamp}\n${channel.secret}`)
          .digest('base64');
        const u = new URL(channel.url);
        u.searchParams.set('timestamp', timestamp);
        u.searchParams.set('sign', sign);
        url = u.toString();
      }
      return {
        url,
        body: JSON.stringify({
          msgtype: 'markdown',
          markdown: { title: title(m), text: `### ${title(m)}\n\n${lines(m).join('\n\n')}` },
        }),
      };
    }
    case 'slack':
      // Slack incoming webhook (https://api.slack.com/messaging/webhooks): `text` is the fallback and
      // notification text, `blocks` the layout; the answer is the plain text "ok".
      return {
        url: channel.url,
        body: JSON.stringify({
          text: `${title(m)}: ${m.alert.summary}`,
          blocks: [
            { type: 'header', text: { type: 'plain_text', text: title(m).slice(0, 150) } },
            { type: 'section', text: { type: 'mrkdwn', text: lines(m).join('\n') } },
          ],
        }),
      };
  }
}

/**
 * Whether the vendor accepted the message: a 2xx status, and for WeCom and DingTalk `errcode`
 * 0, for Feishu `code` 0 (all three answer 200 with an error code when they refuse).
 */
export function accepted(type: ChannelType, status: number, text: string): string | undefined {
  if (status < 200 || status >= 300) return `HTTP ${status}: ${text.slice(0, 200)}`;
  if (type === 'wecom' || type === 'dingtalk' || type === 'feishu') {
    let parsed: { errcode?: unknown; code?: unknown; errmsg?: unknown; msg?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return `not a JSON answer: ${text.slice(0, 200)}`;
    }
    const code = type === 'feishu' ? parsed.code : parsed.errcode;
    if (code !== undefined && code !== 0)
      return `refused: ${String(code)} ${String(parsed.errmsg ?? parsed.msg ?? '')}`;
  }
  return undefined;
}
