"""Cache-stable history: a conversation's compressed prefix is sent again byte for byte on later turns.

Providers serve a prompt's prefix from their cache when it equals an earlier prompt's prefix, at a fraction of the
price (:mod:`promptzip._pricing`). Re-selecting the whole history on every turn changes that prefix and loses the
discount, which can cost more than compression saves. So ``compress_messages(history="stable")`` (the default)
works per turn like this:

1. **Recognise the conversation.** Each message is hashed into a chain (``h[i]`` covers messages ``0..i``), in a
   namespace of the Zipper's fingerprint, the scope, the caller's ``partition`` (the proxy's is the tenant and the
   credential's keyed hash, so clients never share state) and the conversation id when one is given
   (``conversation=``: the ``x-promptzip-conversation`` header, the wrapped client's ``prompt_cache_key``). The
   earlier requests of the conversation whose original messages equal a prefix of this one are found in the
   Zipper's cache in one round trip, so every replica that shares the cache (Redis) finds them. An edited earlier
   turn changes every hash from it on: state recorded after the edit is never applied, only a prefix before it
   can be.
2. **Reuse** the longest such request's *sent* messages as a frozen prefix and compress only what was appended,
   under the same budget (counted, like the original, over the whole request's original tokens).
3. Reuse is taken when it fits the budget, leaves what was appended its fair share of it (a stale prefix must not
   crowd the new turn out), and is not dearer than re-selecting (:meth:`CachePricing.cost` with the cached prefix
   the provider would serve; re-selection is credited with the leading messages it would leave alone). A shorter
   recorded prefix is tried when the longest does not fit. Otherwise, in a conversation seen before, the history
   is **compacted**: everything before the last user turn is compressed fresh to ``headroom`` of the budget (so
   later turns have room to append and the new prefix keeps hitting), each turn's context against that turn's own
   question, recorded as the stable prefix, and the rest is appended as in 2. The leading messages the provider
   caches (at least its minimum cacheable prefix, at most ``HEAD_SHARE`` of the compacted history, more where cache
   writes cost extra, and the shortest that fits it at all where none fits that share; a whole earlier request
   where the provider reads only at breakpoints) are kept as they were sent, so only the history after them is
   rewritten and the compacting request is still partly served from the cache. A request seen for the first time,
   or one where even that fails, is compressed fresh as a whole (one knapsack over everything: the best use of the
   budget for this turn). In a chat that goes on, a request that reuses a prefix is sent with at least the
   provider's minimum cacheable prefix when the budget has room: one below it is never cached, so every later turn
   would resend it at full price.
4. What was sent is recorded under this request's hash, for the next turn.

``history="reselect"`` is the stateless behaviour: the whole chat is compressed against the current question.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from promptzip._cache import Cache, MemoryCache, NullCache, make_key
from promptzip._chat_format import REPLY_PRIMING, message_tokens, validate_messages
from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._messages import check_question, check_scope, compress_messages, question_of
from promptzip._pricing import CachePricing, pricing_for
from promptzip._types import Budget, Result

if TYPE_CHECKING:
    from promptzip._pipeline import Zipper

__all__ = ["HISTORIES", "compress_conversation"]

HISTORIES = ("stable", "reselect")
HEADROOM = 0.5  # the share of the budget a compacted history may take: the rest is room for the turns to come
# The most of a compacted history its cached head may take: the rest is the later history, compressed afresh. More
# where the provider bills a cache write above its input price (Anthropic): a token rewritten there costs more than
# the same token sent uncompressed, so a compaction that keeps too little of the cache can make a chat dearer than
# not compressing it (the agent-trace suite's short chat under a token cap); elsewhere the later history keeps the
# room, and more of the earlier turns' evidence.
HEAD_SHARE = 0.75
HEAD_SHARE_WRITE = 0.9
_NAMESPACE = "conversation-v1"
_TRIES = 3  # recorded prefixes tried per request, longest first
_HEADS = 16  # recorded whole requests a compaction looks through for a cached head
_SLACK = 0.9
_RESERVE = 64  # tokens a compressed request leaves free for the next turn's framing and question
_MARGIN = 64  # tokens over the provider's minimum cacheable prefix a request aims for: it counts framing of its own


@dataclass(frozen=True, slots=True)
class _Prefix:
    """The first ``length`` messages of this conversation as they were sent: a whole earlier request (``whole``),
    or a compacted history that went out as the start of one."""

    length: int
    sent: list[dict[str, Any]]
    whole: bool = True


def _chain(msgs: Sequence[Mapping[str, Any]], namespace: str) -> list[str]:
    out: list[str] = []
    h = hashlib.sha256(namespace.encode()).hexdigest()
    for m in msgs:
        canonical = json.dumps(m, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
        h = hashlib.sha256(f"{h}\x00{canonical}".encode()).hexdigest()
        out.append(h)
    return out


class _Store:
    """Sent prefixes by hash, in the Zipper's cache (a process-local one when that cache is disabled)."""

    _lock = threading.Lock()

    def __init__(self, zipper: Zipper) -> None:
        cache = zipper.cache
        if isinstance(cache, NullCache):  # "none" turns off caching of results, not the memory of a conversation
            with self._lock:  # kept on the Zipper itself: it goes when the Zipper goes
                local = getattr(zipper, "_conversations", None)
                if not isinstance(local, Cache):
                    local = MemoryCache(max_bytes=16 * 2**20)
                    zipper._conversations = local  # type: ignore[attr-defined]
            cache = local
        self.cache = cache

    def found(self, hashes: Sequence[str]) -> list[_Prefix]:
        """The recorded prefixes among ``hashes`` (one round trip), longest first."""
        keys = {make_key(_NAMESPACE, h): n for n, h in enumerate(hashes, start=1)}
        found = self.cache.get_many(list(keys))
        out: list[_Prefix] = []
        for key in sorted(found, key=lambda k: keys[k], reverse=True):
            try:
                record = json.loads(found[key])
            except ValueError:
                continue
            # A whole request is recorded as its list of messages, a compacted history as {"prefix": [...]}.
            whole = isinstance(record, list)
            sent = record if whole else record.get("prefix") if isinstance(record, dict) else None
            if isinstance(sent, list) and len(sent) == keys[key] and all(isinstance(m, dict) for m in sent):
                try:  # a corrupted or foreign entry that parses is a miss, never an error about the caller's chat
                    validate_messages(sent)
                except InputError:
                    continue
                out.append(_Prefix(keys[key], sent, whole))
        return out

    def save(self, h: str, sent: Sequence[Mapping[str, Any]], *, whole: bool = True) -> None:
        messages = [dict(m) for m in sent]
        record = messages if whole else {"prefix": messages}
        payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        self.cache.put(make_key(_NAMESPACE, h), payload.encode())


def _check(history: object, headroom: object) -> tuple[str, float]:
    if history not in HISTORIES:
        raise InputError(f"history must be one of {', '.join(HISTORIES)}, not {history!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) or not 0.0 < float(headroom) <= 1.0:
        raise ConfigError(f"headroom must be a fraction in (0, 1], not {headroom!r}")
    return str(history), float(headroom)


def compress_conversation(
    zipper: Zipper,
    messages: Sequence[Mapping[str, Any]],
    spec: Budget,
    *,
    question: str | None = None,
    scope: str = "all",
    history: str = "stable",
    conversation: str | None = None,
    pricing: CachePricing | None = None,
    partition: str = "",
    headroom: float = HEADROOM,
) -> Result:
    """``compress_messages`` with cache-stable history (module docstring)."""
    history, headroom = _check(history, headroom)
    if conversation is not None and not isinstance(conversation, str):
        raise InputError(f"conversation must be a str id, not {type(conversation).__name__}")
    if not isinstance(partition, str):
        raise InputError(f"partition must be a str, not {type(partition).__name__}")
    for name, value in (("conversation", conversation), ("partition", partition)):
        if value:  # part of the hashed namespace, as UTF-8
            check_text(value, name, allow_nul=True)
    if pricing is not None and not isinstance(pricing, CachePricing):
        raise ConfigError(f"pricing must be a promptzip.CachePricing or None, not {type(pricing).__name__}")
    scope = check_scope(scope)
    question = check_question(question)
    msgs = validate_messages(messages)
    if history == "reselect":
        return compress_messages(zipper, msgs, spec, question=question, scope=scope, partition=partition)
    price = pricing if pricing is not None else pricing_for(zipper.target)
    request = _Request(
        zipper, msgs, spec, question=question, scope=scope, partition=partition, headroom=headroom, price=price
    )
    namespace = "|".join((zipper.fingerprint, scope, partition, conversation or ""))
    hashes = _chain(msgs, namespace)
    store = _Store(zipper)
    result: Result | None = None
    # The longest recorded prefix first; a shorter one (the history compacted at an earlier turn) when the longer
    # one leaves no room for what was appended since.
    known = store.found(hashes[:-1])
    for found in known[:_TRIES]:
        if request.fits and found.sent == [dict(m) for m in msgs[: found.length]]:
            break  # sent as it was, and all of it fits: the request goes out whole, prefix included
        reused = request.appended(found.sent)
        if reused is not None:
            if request.worth(reused, found):
                result = reused
            break
    if result is None and known and not request.fits:  # a conversation seen before: room for its next turns
        result = request.compacted(store, hashes, known)
    if result is None:
        result = request.fresh()
    assert result.messages is not None
    store.save(hashes[-1], result.messages)
    return result


class _Request:
    """One request of a conversation, accounted against its original messages: the ways to send it."""

    def __init__(
        self,
        zipper: Zipper,
        msgs: list[Mapping[str, Any]],
        spec: Budget,
        *,
        question: str | None,
        scope: str,
        partition: str,
        headroom: float,
        price: CachePricing,
    ) -> None:
        self.zipper, self.msgs, self.scope, self.partition, self.headroom = zipper, msgs, scope, partition, headroom
        self.price = price
        self.count = zipper.tokenizer.count
        self.tokens_in = message_tokens(msgs, self.count)
        self.limit = spec.resolve(self.tokens_in)
        if self.limit <= 0:
            raise BudgetError(
                f"the budget resolves to {self.limit} tokens for {self.tokens_in} input tokens", budget=self.limit
            )
        self.question = question or question_of(msgs, scope)
        self.fits = self.tokens_in <= self.limit
        # A chat with a turn of the model in it goes on: its requests leave room for the next turn. A single
        # request ([system,] user) gets its whole budget.
        self.ongoing = any(m.get("role") in ("assistant", "tool", "function") for m in msgs)

    def _compress(
        self, msgs: list[Mapping[str, Any]], cap: Budget, *, frozen: int = 0, questions: Mapping[int, str] | None = None
    ) -> Result:
        return compress_messages(
            self.zipper,
            msgs,
            cap,
            question=self.question,
            scope=self.scope,
            frozen=frozen,
            partition=self.partition,
            questions=questions,
        )

    def fresh(self) -> Result:
        """The whole request compressed afresh: one knapsack over everything."""
        return self._as_original(self._fitted(lambda cap: self._compress(self.msgs, cap)), 0)

    def appended(self, prefix: Sequence[Mapping[str, Any]]) -> Result | None:
        """The request with ``prefix`` sent as before and the rest compressed; None when it cannot fit, or when the
        prefix leaves what was appended less room than its fair share (:func:`_fair_share`)."""
        k = len(prefix)
        sent = message_tokens(prefix, self.count) - REPLY_PRIMING
        appended_in = self.tokens_in - message_tokens(self.msgs[:k], self.count) + REPLY_PRIMING
        share = _fair_share(appended_in, self.tokens_in, self.limit, self.headroom)
        if self.limit - sent < _SLACK * share:
            return None
        joined = [*prefix, *self.msgs[k:]]
        try:
            # What was appended gets its share, not all the room left: a prefix that grows at the budget's own
            # rate keeps fitting for many turns, where one that fills the budget must be compacted (and written to
            # the provider's cache again) every other turn.
            result = self._fitted(
                lambda cap: self._compress(joined, cap, frozen=k), first=sent + int(share) + REPLY_PRIMING
            )
        except BudgetError:
            return None
        return self._as_original(result, k)

    def compacted(self, store: _Store, hashes: list[str], known: Sequence[_Prefix]) -> Result | None:
        """The history before the last user turn compressed to ``headroom`` of the budget, recorded as the stable
        prefix, and the rest appended; None when there is no history or it does not fit. The leading messages the
        provider has cached (:meth:`_cached_heads`, the longest that fits first) stay as they were sent, so the
        compacted request still starts with a cached prefix; only the history after them is compressed afresh."""
        msgs = self.msgs
        last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
        if not any(m.get("role") in ("assistant", "tool", "function") for m in msgs[: max(last_user, 0)]):
            return None  # a first turn has no history to compact: one knapsack over all of it is best
        cap = Budget(tokens=max(1, int(self.limit * self.headroom)))
        asked = self._turn_questions(last_user)
        history: Result | None = None
        for head in [*self._cached_heads(known, last_user), []]:
            try:
                history = self._compress([*head, *msgs[len(head) : last_user]], cap, frozen=len(head), questions=asked)
                break
            except BudgetError:
                continue
        if history is None:
            return None
        assert history.messages is not None
        sent = [dict(m) for m in history.messages]
        store.save(hashes[last_user - 1], sent, whole=False)
        result = self.appended(sent)
        return None if result is None else replace(result, reused_messages=0)

    def _turn_questions(self, last_user: int) -> dict[int, str]:
        """Each message before ``last_user`` with the question of the turn it belongs to (its user message's, or
        the latest one before it). A compacted history is what later turns read about earlier ones, so each turn's
        context keeps what answered its own question, not what the newest question (which its own turn's context
        answers) would pick from it."""
        asked: dict[int, str] = {}
        current: str | None = None
        for i, m in enumerate(self.msgs[:last_user]):
            if m.get("role") == "user":
                current = question_of([m], self.scope)
            if current:
                asked[i] = current
        return asked

    def _cached_heads(self, known: Sequence[_Prefix], last_user: int) -> list[list[dict[str, Any]]]:
        """Runs of leading messages, as earlier requests sent them, that the provider has cached (at least its
        ``min_prefix`` tokens) and that leave the rest of the history a share of the compacted budget (at most
        :data:`HEAD_SHARE`, or :data:`HEAD_SHARE_WRITE` where cache writes cost extra), longest first. Keeping one
        makes compaction rewrite only what follows it, so the compacting request is still served that much from the
        cache. A provider that reads only at breakpoints has cached whole earlier requests; one with a prefix cache
        has also cached every leading run of them.

        Where no cached run fits that share (messages much larger than it, as tool outputs are), the shortest that
        fits the compacted budget at all comes next: rewriting what the provider has cached would buy the later
        history room at the price of a request read from the cache, and a cached prefix is rewritten only where the
        saving beats the cache discount. Only where none fits is the history compressed from its start."""
        premium = self.price.write is not None and self.price.write > self.price.input
        share = (HEAD_SHARE_WRITE if premium else HEAD_SHARE) * self.headroom * self.limit
        room = self.headroom * self.limit
        floor = max(self.price.min_prefix, 1)
        heads: dict[int, tuple[int, list[dict[str, Any]]]] = {}  # by length: (tokens, messages)
        for p in [k for k in known if k.whole and k.length <= last_user][:_HEADS]:
            tokens = message_tokens(p.sent, self.count) - REPLY_PRIMING  # no reply priming inside a prefix
            if floor <= tokens <= room:
                heads.setdefault(p.length, (tokens, p.sent))
        if known and not self.price.breakpoints:
            sent, tokens = known[0].sent[: min(known[0].length, last_user)], 0
            for h, message in enumerate(sent, start=1):
                tokens += message_tokens([message], self.count) - REPLY_PRIMING  # a prefix's count adds up
                if tokens > room:
                    break
                if tokens >= floor:
                    heads.setdefault(h, (tokens, sent[:h]))
        within = sorted((h for h in heads.values() if h[0] <= share), key=lambda head: head[0], reverse=True)
        over = min((h for h in heads.values() if h[0] > share), key=lambda head: head[0], default=None)
        ranked = within[:_TRIES] if within else [over] if over else []
        return [[dict(m) for m in messages] for _, messages in ranked]

    def worth(self, reused: Result, found: _Prefix) -> bool:
        """Is reusing the sent prefix at most as dear as re-selecting? Re-selection would fill the budget and keep
        at best the leading messages that were sent unchanged; reuse is served the whole prefix from the cache."""
        price = self.price
        prefix_tokens = message_tokens(found.sent, self.count) - REPLY_PRIMING  # no reply priming inside a prefix
        same = 0
        while same < found.length and found.sent[same] == self.msgs[same]:
            same += 1
        unchanged = message_tokens(found.sent[:same], self.count) - REPLY_PRIMING if same else 0
        # Where the provider reads only at breakpoints, a compacted history that never ended a request is not cached.
        cacheable = prefix_tokens if found.whole or not price.breakpoints else 0
        reuse_cost = price.cost(reused.tokens_out, cached=min(reused.tokens_out, price.cached_tokens(cacheable)))
        fresh_tokens = min(self.limit, reused.tokens_in)
        fresh_cost = price.cost(fresh_tokens, cached=min(fresh_tokens, price.cached_tokens(unchanged)))
        return reuse_cost <= fresh_cost

    def _fitted(self, run: Callable[[Budget], Result], *, first: int | None = None) -> Result:
        """``run`` under ``first`` tokens where given, else (in a chat that goes on) under the budget less a reserve
        for the next turn's framing and question (a request that fills its budget to the last token leaves the next
        one, a few tokens longer, no room to append to its prefix), else under the whole budget: the first that
        fits. In a chat that goes on, ``first`` is at least the provider's minimum cacheable prefix where the budget
        has room for it: a request below that minimum is never cached, so every later turn would pay in full for
        the prefix it resends, where the few tokens that lift it over cost once."""
        caps = [self.limit]
        if not self.fits and self.ongoing and (reserve := min(_RESERVE, self.limit // 10)) > 0:
            caps.insert(0, self.limit - reserve)
        floor = self.price.min_prefix + _MARGIN
        if first is not None and self.ongoing and self.price.min_prefix > 0 and first < floor < caps[0]:
            first = floor  # only where the budget reaches it: else the fair share stands
        if first is not None and 0 < first < caps[0]:
            caps.insert(0, first)
        for cap in caps[:-1]:
            try:
                return run(Budget(tokens=cap))
            except BudgetError:
                continue
        return run(Budget(tokens=caps[-1]))

    def _as_original(self, result: Result, reused: int) -> Result:
        """``result`` accounted against the original request: its tokens in, its budget, and how many messages
        went out as before."""
        decision = result.decision
        if decision == "kept_all" and result.tokens_out < self.tokens_in:
            decision = "compressed"
        return replace(result, tokens_in=self.tokens_in, budget=self.limit, decision=decision, reused_messages=reused)


def _fair_share(appended_in: int, tokens_in: int, limit: int, headroom: float) -> float:
    """The share of the budget owed to the ``appended_in`` tokens appended since a reused prefix: what a uniform
    rate would give them, all they need, or the share compaction leaves (``1 - headroom``), whichever is least. A
    prefix must leave at least nine tenths of it (a stale prefix that crowds the newest turn out is not worth its
    cache discount), and what was appended is compressed to it first."""
    return min(appended_in, (1.0 - headroom) * limit, limit * appended_in / max(tokens_in, 1))
