/**
 * Baton's public API. Everything a bot author or an operator embeds is exported here, and
 * nothing else is public (deep imports are not supported).
 * @module
 */

// Authoring flows
export { defineFlow, promptOf, toMermaid } from './flow/define.ts';
export type {
  Accepts,
  Choice,
  Flow,
  FlowData,
  FlowSpec,
  Outcome,
  StepContext,
  ResultContext,
  StepInput,
  StepSpec,
} from './flow/define.ts';
export { transition, adminReset, freshSnapshot, orderBatch } from './flow/transition.ts';
export type { Effect, ResolvedMessage, TransitionEnv, TransitionResult } from './flow/transition.ts';
export { orderFlow, OrderData } from './bots/order.ts';
// Effects, words and typed flows
export { effect, EffectError, promptsOf } from './flow/define.ts';
export type {
  ChoiceSpec,
  DataOf,
  DataSchema,
  EffectContext,
  EffectDef,
  EffectFailure,
  EffectMap,
  EffectResultsOf,
  EventContext,
  EventPayloads,
  EventPayloadsOf,
  Jsonified,
  EffectResult,
  EventSpec,
  Replies,
  Reply,
  StepEffect,
  StepIdOf,
  Translate,
  TypedFlow,
  Words,
  WordsContext,
  WordsSpec,
} from './flow/define.ts';
export { effectIdFor, isEffectResult } from './flow/transition.ts';
export type { EffectStart } from './flow/transition.ts';
// Several flows: the router picks one for a new session
export { flowRouter } from './flow/router.ts';
export type { FlowRouter, RouterSpec } from './flow/router.ts';
// Testing a flow without servers
export { testFlow } from './testing/test-flow.ts';
export type { FlowTest, PendingEffect, TestFlowOptions, TestInput, TestReply } from './testing/test-flow.ts';

// Running Baton
export { createBaton, loadFlowModule, loadFlows } from './app.ts';
export type { Baton, BatonOptions } from './app.ts';
export { loadConfig, parseDurationSeconds } from './config/index.ts';
export type { Config, SyncMode } from './config/index.ts';
export { run } from './cli/index.ts';

// Data model
export type {
  InboundMessage,
  MessageContent,
  ProviderName,
  SessionKey,
  StatusUpdate,
  StoredMessage,
  WebhookBatch,
} from './model/message.ts';
export type {
  DeadLetter,
  OutboundBody,
  OutboundRecord,
  SessionSnapshot,
  SessionView,
  TransitionKind,
  TransitionRecord,
} from './model/session.ts';
export { MAY_HAVE_REACHED, mayHaveReached, toSessionView } from './model/session.ts';

// Storage backends
export type { Backend, BatchCommit, LeaseGrant, ServedFlow } from './backends/types.ts';
export { EmbeddedBackend } from './backends/embedded/index.ts';
export type { EmbeddedOptions } from './backends/embedded/index.ts';
export { DistributedBackend, migrate } from './backends/distributed/index.ts';
export type { DistributedBackendOptions } from './backends/distributed/index.ts';

// Errors
export {
  BatonError,
  ConfigError,
  ERROR_CODES,
  FencedError,
  FlowDefinitionError,
  FlowRuntimeError,
  SendError,
  StorageUnavailableError,
  VersionConflictError,
} from './errors.ts';
export type { ErrorCode } from './errors.ts';

// Reply bodies: builders and WhatsApp's limits
export {
  WHATSAPP_LIMITS,
  audio,
  buttons,
  clip,
  document,
  image,
  isolated,
  list,
  location,
  mediaLink,
  replyNotes,
  replyProblems,
  sticker,
  template,
  text,
  video,
} from './flow/replies.ts';
export type { InteractiveOptions, MediaInput, OutboundBodyOf, TemplateOptions } from './flow/replies.ts';
export type {
  InteractiveHeader,
  ListRow,
  ListSection,
  MediaRef,
  OutboundBodyType,
  TemplateComponent,
  TemplateParameter,
} from './model/session.ts';
// Flow maps
export { flowGraph, flowMermaid, renderFlowSvg } from './graph/index.ts';
export type {
  FlowGraph,
  FlowGraphEdge,
  FlowGraphNode,
  RenderFlowSvgOptions,
  StepCount,
} from './graph/index.ts';

// Support console: the agent's side of a hand-off (pure; `Engine` runs them under the lease) and alerts
export { agentMessage, agentOf, handback, takeSession } from './flow/agent.ts';
export type { AgentChange } from './flow/agent.ts';
export { AlertWatcher } from './alerts/index.ts';
export type { AlertBody, AlertName, AlertOptions } from './alerts/index.ts';
export type { AgentClaim } from './model/session.ts';
export type { LeaseInfo } from './backends/types.ts';
