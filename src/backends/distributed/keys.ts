/**
 * Every Redis key the distributed backend uses is built here and nowhere else.
 *
 * All keys of one session share the hash tag `{<channel>:<user>}`, so every per-session
 * script touches one slot and the layout works on Redis Cluster unchanged. The few global
 * keys (the ready queue, the flush stream, the reaper lock) live in their own slots and are
 * only ever touched by single-key commands or scripts.
 *
 * Channel and user are escaped (`%`, `:`, `{`, `}`) so a tag always parses back to the same
 * session, whatever characters a gateway puts in its ids.
 * @module
 */
import type { SessionKey } from '../../model/message.ts';

function escapePart(s: string): string {
  return s.replace(/[%:{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

function unescapePart(s: string): string {
  return s.replace(/%([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The keys of one session, all in the slot of its hash tag. */
export interface SessionKeys {
  /** `<channel>:<user>` escaped: the member used in global structures (ready queue, stream). */
  readonly member: string;
  /** HASH `v` version, `r` revision, `f` fence of the last commit, `s` snapshot JSON (absent: tombstone). */
  readonly state: string;
  /** HASH `n` last fence granted, `ceil` end of the fence block, `epoch` Redis run_id that granted it. */
  readonly fence: string;
  /** STRING lease token, with PX expiry. */
  readonly lock: string;
  /** STRING due time (epoch ms) while the session is scheduled and not yet leased. */
  readonly sched: string;
  /** STRING when an agent last cleared the lease (epoch ms), with PX expiry. */
  readonly cleared: string;
  /** ZSET message id by `seq`: the mailbox. */
  readonly mbox: string;
  /** HASH message id -> StoredMessage JSON. */
  readonly msgs: string;
  /** STRING per-session arrival counter (`seq`). */
  readonly seq: string;
  /**
   * STRING version of the mailbox's figures in the global stats (see stats-pending-4.lua);
   * expires with an idle session, but not before the global stats forget its version.
   */
  readonly pv: string;
  /** HASH outbound id -> immutable record JSON. */
  readonly out: string;
  /** HASH outbound id -> mutable part JSON (status, attempts, providerMessageId, lastError, rev). */
  readonly outState: string;
  /** ZSET outbound id by seq: every outbound record kept in Redis (capped). */
  readonly outIndex: string;
  /** ZSET outbound id by seq: records pending or sending. */
  readonly unsent: string;
  /** HASH provider message id -> outbound id. */
  readonly pmid: string;
  /** Status webhooks about provider message ids not recorded yet (outbound-update-7.lua). */
  readonly early: string;
  /** STRING present while an agent waits for the session's baton (see Backend.wantLease). */
  readonly want: string;
  /** LIST of JSON entries not yet copied to PostgreSQL, oldest first. */
  readonly journal: string;
  /** STRING dedupe marker of one inbound message id, with EX expiry. */
  seen(messageId: string): string;
}

/** Sessions whose key names {@link Keys.forMember} keeps at most (a few hundred bytes each). */
const RECENT_SESSIONS = 4096;

export class Keys {
  readonly prefix: string;
  /** Key names of the sessions named lately (see forMember). */
  private readonly recent = new Map<string, SessionKeys>();
  /** ZSET session member by due time: scheduled, claimed (visibility) and leased (watchdog) sessions. */
  readonly ready: string;
  /** Pub/sub channel announcing newly scheduled sessions to waiting workers. */
  readonly wake: string;
  /** STREAM of session members whose journal has entries to copy to PostgreSQL. */
  readonly flush: string;
  /** STRING `<database>/<schema>`: the PostgreSQL copy the keys of this prefix belong to. */
  readonly owner: string;
  /**
   * STRING when Redis was last found without this deployment's keys (epoch ms), for the dedupe
   * window: the messages it had seen are known to PostgreSQL only, so the intake log is on.
   */
  readonly forgot: string;
  /** STRING lock of the periodic reaper. */
  readonly reaper: string;
  /** STRING lock of the reaper's walk over the key space, kept as long as the walk should rest. */
  readonly sweep: string;
  /** STRING lock of the walk that follows a change of a cluster's masters (one process walks). */
  readonly failoverWalk: string;
  /** STRING lock of the periodic retention purge. */
  readonly purge: string;
  /** STRING lock of the stall check (one process per interval, see maintenance.ts). */
  readonly stallCheck: string;
  /** ZSET worker id by heartbeat expiry (epoch ms). */
  readonly workers: string;
  /**
   * ZSET process id by expiry (epoch ms): processes that take batons without being workers (an
   * ingress's admin API, the CLI) while they do, for {@link Backend.holderAlive}; not counted as workers.
   */
  readonly holders: string;
  /** ZSET `[worker id, flow id, flow version]` (JSON) by heartbeat expiry: the flows live workers run. */
  readonly serving: string;
  /** ZSET lease token by watchdog score (lease expiry + grace): the leases held, counted by `stats`. */
  readonly leases: string;
  /** HASH ingress id -> `<low watermark>:<published at>:<loop lag>` (see intake-watermark.ts). */
  readonly intake: string;
  /** Pub/sub channel on which workers waiting for a batch's window ask ingresses to publish. */
  readonly intakeAsk: string;
  /**
   * The global pending-message figures (see scripts/stats-pending-4.lua), all in one slot
   * (hash tag `{<prefix>}`): ZSET session member -> oldest pending storedAt.
   */
  readonly pendingOldest: string;
  /** HASH session member -> "<version>:<pending count>". */
  readonly pendingCounts: string;
  /** STRING total pending messages. */
  readonly pendingDepth: string;
  /** ZSET session member -> when its mailbox emptied (tombstones of `pendingCounts`). */
  readonly pendingTombs: string;
  /** STRING the process that evaluates the queue alerts (see alerts-lead-1.lua). */
  readonly alertsLeader: string;
  /** HASH alert name -> when its `firing` POST was delivered (the episodes announced). */
  readonly alertsFiring: string;
  /** STRING messages stored in one second, by every process (see throughput.ts). */
  readonly storedIn: (second: number) => string;

  constructor(prefix: string) {
    if (!/^[\w.:-]+$/.test(prefix)) throw new Error(`invalid Redis key prefix "${prefix}"`);
    this.prefix = prefix;
    this.ready = `${prefix}:ready`;
    this.wake = `${prefix}:wake`;
    this.flush = `${prefix}:flush`;
    this.owner = `${prefix}:owner`;
    this.forgot = `${prefix}:forgot`;
    this.reaper = `${prefix}:reaper`;
    this.sweep = `${prefix}:sweep`;
    this.failoverWalk = `${prefix}:failover-walk`;
    this.purge = `${prefix}:purge`;
    this.stallCheck = `${prefix}:stallcheck`;
    this.workers = `${prefix}:workers`;
    this.holders = `${prefix}:holders`;
    this.serving = `${prefix}:serving`;
    this.leases = `${prefix}:leases`;
    this.intake = `${prefix}:intake`;
    this.intakeAsk = `${prefix}:intake:ask`;
    const stats = `${prefix}:stats:{${prefix}}`;
    this.pendingOldest = `${stats}:oldest`;
    this.pendingCounts = `${stats}:counts`;
    this.pendingDepth = `${stats}:depth`;
    this.pendingTombs = `${stats}:tombs`;
    this.storedIn = (second) => `${stats}:rate:${second}`;
    this.alertsLeader = `${prefix}:alerts:leader`;
    this.alertsFiring = `${prefix}:alerts:firing`;
  }

  /** STRING marking a dashboard sign-in as signed out, expiring with its cookie. */
  signedOut(signInId: string): string {
    return `${this.prefix}:signout:${signInId}`;
  }

  /**
   * STRING the session key user a business-scoped user id is bound to on a channel
   * (user-aliases.ts), expiring with idle sessions. Not a session key: its own slot.
   */
  userAlias(channel: string, userId: string): string {
    return `${this.prefix}:useralias:${escapePart(channel)}:${escapePart(userId)}`;
  }

  /**
   * STRING the session key user a message named by user id alone was stored under, for as long
   * as its id is remembered for dedupe: a redelivery goes to the same session (user-aliases.ts).
   */
  userRoute(channel: string, messageId: string): string {
    return `${this.prefix}:userroute:${escapePart(channel)}:${escapePart(messageId)}`;
  }

  /** The member string of a session, as stored in the ready queue and the flush stream. */
  member(key: SessionKey): string {
    return `${escapePart(key.channel)}:${escapePart(key.user)}`;
  }

  /** The session a member names. */
  parseMember(member: string): SessionKey {
    const i = member.indexOf(':');
    if (i < 0) throw new Error(`not a session member: ${member}`);
    return { channel: unescapePart(member.slice(0, i)), user: unescapePart(member.slice(i + 1)) };
  }

  session(key: SessionKey): SessionKeys {
    return this.forMember(this.member(key));
  }

  forMember(member: string): SessionKeys {
    let keys = this.recent.get(member);
    if (keys === undefined) {
      // Kept for the sessions in hand: a turn names its session's keys a dozen times, and each
      // naming built 18 strings (4% of what a worker allocated per message).
      if (this.recent.size >= RECENT_SESSIONS) this.recent.clear();
      keys = this.build(member);
      this.recent.set(member, keys);
    }
    return keys;
  }

  private build(member: string): SessionKeys {
    const base = `${this.prefix}:{${member}}`;
    return {
      member,
      state: `${base}:state`,
      fence: `${base}:fence`,
      lock: `${base}:lock`,
      sched: `${base}:sched`,
      cleared: `${base}:cleared`,
      mbox: `${base}:mbox`,
      msgs: `${base}:msgs`,
      seq: `${base}:seq`,
      pv: `${base}:pv`,
      out: `${base}:out`,
      outState: `${base}:outst`,
      outIndex: `${base}:outidx`,
      unsent: `${base}:unsent`,
      pmid: `${base}:pmid`,
      early: `${base}:early`,
      want: `${base}:want`,
      journal: `${base}:journal`,
      seen: (messageId: string) => `${base}:seen:${messageId}`,
    };
  }

  /**
   * SCAN pattern matching the per-session keys the reaper looks for under this prefix: `mbox`,
   * `unsent` and `journal` (no other per-session key starts with j, m or u then b, n or o).
   */
  reapPattern(): string {
    return `${this.prefix}:{*}:[jmu][bno]*`;
  }

  /** The session member of a per-session key found by SCAN, or null if it is not one. */
  memberOf(redisKey: string): string | null {
    const start = this.prefix.length + 2;
    if (!redisKey.startsWith(`${this.prefix}:{`)) return null;
    const end = redisKey.indexOf('}', start);
    return end < 0 ? null : redisKey.slice(start, end);
  }

  /** Every key under this prefix (tests and tooling only). */
  allPattern(): string {
    return `${this.prefix}:*`;
  }
}
