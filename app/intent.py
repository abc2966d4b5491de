"""What a question asks for: a Node-vs-Python decision, listed items, or something out of scope."""

import re

_OURS = r"node(?:\.?js)?|nodejs|python|javascript|js|typescript|py"
_OUR_SIDES = re.compile(rf"\b(?:nod|{_OURS})\b", re.I)
MENTIONS = {
    "node": re.compile(r"\bnode(?:\.?js)?(?:'s)?\b|\bnodejs\b|\bjavascript\b|\bjs\b", re.I),
    "python": re.compile(r"\bpython(?:'s)?\b|\bdjango\b|\bpy\b", re.I),
}
# Runtimes and languages the article does not compare. "go" only as a noun in a comparison.
_FOREIGN = (
    r"golang|rust|java|spring(?: boot)?|kotlin|ktor|scala|c#|\.net(?: \d+)?|dotnet|asp\.net|"
    r"php|laravel|symfony|ruby|rails|elixir|phoenix|erlang|deno|bun|c\+\+|swift|haskell|"
    r"clojure|perl|dart|zig"
)
_FOREIGN_NAMED = re.compile(rf"(?<![\w.#+])(?:{_FOREIGN})(?![\w#+])", re.I)
# "Go" is a runtime when capitalised, or when it stands right next to the comparison.
_GO = r"(?-i:Go)"
_GO_OPTION = re.compile(r"\bgo\s+(?:vs\.?|versus|or)\s|\b(?:vs\.?|versus|than)\s+go\b", re.I)
# "Go vs Node", "rewriting it in Rust", "Phoenix … a better choice than Node".
_FOREIGN_OPTION = re.compile(
    rf"(?<![\w.#+])(?:{_FOREIGN}|{_GO})(?![\w#+])(?:(?!\b(?:but|however|though)\b)[^.?!,;:]){{0,40}}?\b"
    rf"(?:vs\.?|versus|or|than|replac\w*|"
    rf"instead of)\b"
    rf"|\b(?:vs\.?|versus|than|instead of|rather than|compared (?:to|with)|or)\s+"
    rf"(?:\w+\s+){{0,2}}(?:{_FOREIGN}|{_GO})(?![\w#+])"
    rf"|\b(?:rewrit\w*|port\w*|switch\w*|mov\w*|migrat\w*)\b[^.?!]{{0,40}}\b(?:in|to)\s+"
    rf"(?:{_FOREIGN}|{_GO})(?![\w#+])",
    re.I,
)
_ALTERNATIVES = re.compile(
    r"([\w.#+-]+(?:\s+[A-Z][\w.#+-]*)?)(?:\s*\([^)]*\))?\s+"
    r"(?:or|vs\.?|versus|(?:better|faster|slower|easier) than|instead of)\s+"
    r"(?:plain |just |a |an |the )?([\w.#+-]+)",
    re.I,
)
# The article compares; it gives no install, fix or tuning instructions and reads no errors.
_HOW_TO = re.compile(
    r"\b(?:how (?:do|can|would) (?:i|we|you)|how to)\s+(?!choose|decide|pick|know which|tell which)"
    r"|^\s*how many \w+(?: \w+)? (?:should|do|must) (?:i|we)\b|\bright value\b"
    r"|\btraceback\b|\bstack ?trace\b|\bhow (?:to )?fix\b|\bfix\s*\?|\bCVEs?\b|\bvulnerabilit\w*"
    r"|\b(?:oom|out of memory|memory leak|segfault)\b|\bkeeps? (?:crashing|failing|getting)\b"
    r"|\b(?:never gets called|doesn't work|does not work|not working|isn't working)\b"
    r"|\bis this code\b|\bcode review\b",
    re.I,
)
# Error messages, flags and code: "TypeError", "ERR!", "EADDRINUSE", "--max-old-space-size",
# "gc.freeze()", "app.use", "(req, res) =>".
_ERROR = re.compile(
    r"\b[A-Z]\w*(?:Error|Exception)\b|\bERR!|\bE[A-Z]{5,}\b|(?i:\berror:)|(?<!\w)--[a-z][\w-]+"
    r"|\b\w+(?:\.\w+)+\(|\b(?:app|req|res|router)\.\w+|=>"
)
# Topics next to the article's that it never discusses.
_UNCOVERED = re.compile(
    r"\b(?:salar\w*|earn\w*|paid more|job market|hiring|cost\w*|pric\w*|per month|hosting|"
    r"heroku|render\.com|vercel|cheap\w*|ide|vs ?code|pycharm|editor|secur\w*|"
    r"desktop|gui|history|licen[cs]\w*|"
    r"command[- ]line|cli|firmware|embedded|microcontrollers?|thermostats?|ios|android|"
    r"mobile apps?|iphone|react native|user interface|"
    r"(?:ts|typescript) or (?:plain )?(?:js|javascript)|poetry|uv|versions?)\b",
    re.I,
)
_ABOUT_ME = re.compile(
    r"\b(?:who (?:built|made|created|trained) you|what (?:model|llm) (?:are you|do you "
    r"(?:run|use))|are you (?:an? )?(?:ai|bot|human|chatgpt|gpt))\b",
    re.I,
)
_ADVICE = re.compile(r"\bshould (?:i|we)\b", re.I)
_COMPARES = re.compile(r"\b(?:or|vs\.?|versus|than|compared (?:to|with))\b", re.I)
# Details about an item or runtime that a comparison article never gives.
_DETAILS = re.compile(
    r"\b(?:step[- ]by[- ]step|migration (?:plan|guide|steps)|upgrading from|api changes|"
    r"compatib\w+ with|how much (?:ram|memory|cpu|disk)|who (?:created|invented|wrote|founded)|"
    r"what year|first released|release date|github stars|weekly downloads|"
    r"requests?[- ]per[- ]second (?:benchmark )?numbers|benchmark numbers)\b",
    re.I,
)
_GLUE = set("whether either is it this that not a an the and to be one".split())
_BOTH_SIDES = re.compile(rf"\b(?:{_OURS})\b.*\b(?:{_OURS})\b", re.I)
_NOUN = (
    r"(?:librar\w*|libs?|frameworks?|packages?|package managers?|orms?|tools?|modules?|queues?|"
    r"options?)"
)
# An item noun asks for items only inside a question about it ("which ORMs…", "queues in
# node?"), not in "our internal tools" or "a public library's app".
_ASKS_FOR_ITEMS = re.compile(
    rf"\b(?:which|what|whats|any|list|name|compare|recommended|available|every|all)\s+"
    rf"(?:[\w'.-]+[\s/]+){{0,3}}?{_NOUN}\b"
    rf"|\b{_NOUN}\s+(?:\w+\s+){{0,3}}?(?:recommend\w*|available|exist\w*|does (?:it|the article) "
    rf"(?:name|list))"
    rf"|\b(?:equivalents?|counterparts?|alternatives?)\s+(?:of|to|for)\b"
    rf"|\b(?:is|are) there (?:an?y?) (?:[\w'.-]+\s+){{0,3}}?(?:{_NOUN}|equivalent|counterpart)"
    rf"|\b(?:{_NOUN}|servers?)\s+(?:for|in|on)\s+(?:the\s+)?(?:node|python|py|js|each|both)\b",
    re.I,
)
_ITEM_PHRASES = re.compile(
    r"\bjust the names\b|\bwhat (?:can|could) (?:i|we) use\b"
    r"|\bdoes (?:the article|it) (?:point to|recommend|suggest|name|list)\b"
    r"|\bwhat(?:'s|s| is| are)? (?:it|they|each one) (?:recommended|good|best|used) for\b"
    r"|\bwhat does (?:each|it|the article)\b|\beach (?:one|side|of them) (?:have|has|offer|"
    r"use)s?\b|\bhow does (?:the article|it|the comparison) rate\b"
    r"|\bwhat does (?:node|python)\w* (?:have|offer)\b"
    r"|\bhow does (?:node|python)\w* (?:do|fare|compare|rate) (?:on|at|for|in)\b"
    r"|\bhow (?:is|are) [\w/' .-]{0,40}?\brated\b|\bwhat does the (?:table|comparison) "
    r"(?:list|say|show|name)\b",
    re.I,
)
# Item words that ask for items even without "which": not "queue workers" or "a library's app".
_ITEM_NOUNS = re.compile(
    r"\b(?:libraries|librarys|libs?|frameworks?|packages|package managers?|orms?|tools|options|"
    r"recs)\b",
    re.I,
)
_ASKS_WHAT = re.compile(
    r"^\s*(?:(?:ok|okay|and|so)[,\s]+)*(?:what is|what's|whats|what are|how many|how good|list|"
    r"name)\b",
    re.I,
)
# "If we go with Node, which libraries…" sets a side; it does not ask for a decision.
_CONDITIONAL_PICK = re.compile(
    r"\bif (?:i|we|you) (?:go|went|pick|choose|use|stick) (?:with )?[\w.]+,?", re.I
)
# Words that ask for a verdict even when items are mentioned ("which ORM is better?").
_DECIDES = re.compile(
    r"\b(?:better|faster|winner|wins?|which language|which runtime|which stack|which one is|"
    r"should (?:i|we|our|it|they)|prefer\w*|go with|choose|pick|(?:right|good|better) choice|"
    r"best (?:language|runtime|stack|choice|fit|option)|"
    r"mistake|overkill|bad idea|good idea|worth switching|make sense|stick with|switch(?:ing)? to|"
    r"mov(?:e|ing) to|migrat\w* to|rewrit\w*)\b",
    re.I,
)
# A side-by-side frame alone ("Node vs Python: which GraphQL libraries?") is not a verdict ask.
_FRAME = re.compile(rf"\b(?:{_OURS}) (?:or|vs\.?|versus) (?:{_OURS})\b", re.I)


def mentioned_sides(text: str) -> list[str]:
    """The sides ("node", "python") the text names, in a fixed order."""
    return [side for side, rx in MENTIONS.items() if rx.search(text)]


def named_items(text: str, listed: re.Pattern[str] | None) -> set[str]:
    """The listed items (Express, BullMQ, Socket.io…) the text names, lower-cased."""
    return {m.group(0).lower() for m in listed.finditer(text)} if listed is not None else set()


def names_listed(text: str, listed: re.Pattern[str] | None) -> bool:
    """The text names an item the article lists."""
    return listed is not None and listed.search(text) is not None


def out_of_scope(
    text: str,
    concepts: dict[str, int],
    listed: re.Pattern[str] | None,
    sides_of: dict[str, set[str]] | None = None,
) -> str | None:
    """Why the article cannot answer this question, or None when it may."""
    ours = bool(_OUR_SIDES.search(text)) or names_listed(text, listed)
    if listed is not None and sides_of and _COMPARES.search(text) and not _ADVICE.search(text):
        # "Celery vs RQ: which loses fewer jobs?": the article lists both, ranks neither. (Asked
        # as advice for a use case — "which should we use for our chat?" — the use case decides.)
        named = named_items(text, listed)
        common = set.intersection(*(sides_of.get(n, set()) for n in named)) if named else set()
        if len(named) >= 2 and common and set(mentioned_sides(text)) <= common:
            return "compares two items the article lists side by side without ranking them"
    if _FOREIGN_OPTION.search(text) or _GO_OPTION.search(text):
        return "compares technologies the article does not cover"
    if _FOREIGN_NAMED.search(text) and not ours:
        return "compares technologies the article does not cover"
    for a, b in _ALTERNATIVES.findall(text):
        if a.lower() in _GLUE or b.lower() in _GLUE:
            continue  # "whether or not", "this or that"
        if not _ours(a, listed) and not _ours(b, listed) and not ours:
            return "compares technologies the article does not cover"
    if (_HOW_TO.search(text) or _ERROR.search(text)) and not _BOTH_SIDES.search(text):
        return "asks for instructions or a fix, not a choice"
    if _ABOUT_ME.search(text):
        return "asks about the assistant, not the knowledge base"
    if _DETAILS.search(text):
        return "asks for details the article does not give"
    if not concepts and _UNCOVERED.search(text):
        return "a topic the article does not discuss"
    return None


def asks_items(
    text: str, concepts: dict[str, int] | None = None, listed: re.Pattern[str] | None = None
) -> bool:
    """The question wants items the article lists, not a verdict."""
    text = _CONDITIONAL_PICK.sub(" ", text)
    if _DECIDES.search(text):
        return False
    if _ITEM_PHRASES.search(text) or _ASKS_FOR_ITEMS.search(text):
        return True
    if _FRAME.search(text):  # "Node or Python for our internal tools?" asks for a verdict
        return False
    # "graphql libs for node?", "tell me about nestjs": an item word, or a listed name when the
    # question names no use case ("we trained a PyTorch model, what should serve it?" does).
    return bool(
        _ASKS_WHAT.search(text)
        or _ITEM_NOUNS.search(text)
        or (not concepts and names_listed(text, listed))
    )


def _ours(name: str, listed: re.Pattern[str] | None) -> bool:
    return bool(_OUR_SIDES.search(name)) or names_listed(name, listed)
