"""Question clean-up before retrieval: drop injected instructions, fix typos, name the concepts."""

import re
from dataclasses import dataclass, field
from functools import lru_cache

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

# Topic vocabulary: everyday words for what the article's rows and sections are about.
# Each expansion is plain text that is matched against the corpus, never an answer.
CONCEPTS: dict[str, tuple[str, str]] = {
    "realtime": (
        r"web ?sockets?|real[- ]?time|realtime|live|chat\w*|messag\w*(?! (?:bus|queue|broker))|"
        r"multiplayer|gam\w+|"
        r"presence|typing indicators?|collaborat\w*|instant\w*|push notifications?|leaderboards?|"
        r"socket\.?io|streaming updates|notifications?|whiteboard|lobby|co-?editing",
        "real-time apps chat gaming websocket connections event loop",
    ),
    "ml": (
        r"ml|ai|machine learning|model serving|inference|predict\w*|pytorch|tensorflow|"
        r"scikit[- ]?learn|sklearn|classifier|computer[- ]vision|deep learning|neural|"
        r"embeddings?|llms?|recommend\w* model|trained model|models?|recommender\w*|"
        r"recommendation (?:engine|model|system)s?|(?:it's|it is|model is|been) trained",
        "ML model serving model training and inference libraries",
    ),
    "etl": (
        r"etl|elt|extract\w*|transform(?!ers?\b)\w*|(?<!own )(?<!ci )(?<!deploy )pipelines?|"
        r"csv|ingest\w*|(?:data|analytics) warehouse|warehouse tables?|tabular|parquet|"
        r"aggregat\w*|data engineer\w*|clean\w* (?:it|them|the data|data)|"
        r"(?:load|put|write|push)\w* (?:it |them |data )?(?:in|into|to) (?:the |our )?warehouse|"
        r"reshap\w*|dedup\w*|normali[sz]\w*|data engineering|airflow|kafka|nightly|"
        r"each night|redshift|bigquery|snowflake|data lake|reporting tables?|sync(?:ing)? data",
        "data pipelines ETL Pandas Polars NumPy",
    ),
    "microservices": (
        r"micro[- ]?services?|kubernetes|k8s|containers?|containeri[sz]\w*|docker|"
        r"cold[- ]starts?|image sizes?|"
        r"startup time|serverless|small (?:independent|deployable) services|many small services|"
        r"independently deploy\w*|small (?:independent|separate) services|"
        r"(?:small|tiny|little) (?:\w+ )?services|(?:twenty|thirty|forty|fifty|dozens? of|"
        r"hundreds? of) (?:small |tiny |little )?services|"
        r"\d+ (?:small |separate )?(?:\w+ )?services|"
        r"(?:mesh|fleet|dozens?) of (?:\w+ ){0,3}services|lots of small \w* ?services|"
        r"split (?:\w+ )?into (?:\w+ )?(?:small )?services|"
        r"service mesh|monolith\w*|decompos\w*|carv\w* (?:it|\w+) up|"
        r"break\w* (?:it|\w+) (?:up|apart)|"
        r"(?:its|their) own (?:repo|image|container|deploy\w*)s?|small [\w/-]+ services",
        "microservices faster startup smaller container images",
    ),
    "fullstack": (
        r"full[- ]?stack|same language|"
        r"(?:ui|front[- ]?end|client|browser)\b[^.?!]{0,40}\b(?:one|single) language|"
        r"(?:one|a single) language (?:for|across|on) (?:both|the "
        r"(?:whole|full|entire) stack|front\w*|client)|both ends|"
        r"frontend and backend|client and serv\w+|"
        r"(?:web )?ui and (?:the )?(?:api|backend|server)|browser code and the server|"
        r"react(?! native)|next\.?js|"
        r"vue|angular|svelte|context[- ]switch\w*|switch(?:ing)? (?:between )?languages|"
        r"whole stack|end[- ]to[- ]end",
        "full-stack same language eliminates context switching",
    ),
    "jobs": (
        r"background|workers?|queues?|celery|cron|scheduled|out-of-band|enqueue\w*|"
        r"async tasks?|jobs?|batch",
        "background jobs data-heavy Celery NumPy Pandas",
    ),
    "graphql": (
        r"graph ?ql|gql|resolvers?|mutations?|apollo|query language|subscriptions|typed schemas?|"
        r"(?:only |exactly )?the fields (?:\w+ ){0,2}needs?|fetch nested|over-?fetch\w*|"
        r"under-?fetch\w*|"
        r"one round[- ]trip|nested (?:data|queries|objects)|combined endpoints?",
        "GraphQL API strong frameworks",
    ),
    "rest": (
        r"rest(?:ful+)?(?!\s+of\b)|crud|json (?:api|backend)|endpoints?|http api|web service|"
        r"plain api|simple api|basic (?:api|backend)|todo app|admin",
        "REST API standard CRUD team preference",
    ),
    "datascience": (
        r"data science|data scien\w+|analytics|statistic\w*|dataframes?|numpy|pandas|polars|"
        r"crunch\w*|arrays?|number crunching",
        "data processing data science ecosystem Pandas NumPy Polars",
    ),
    "io": (
        r"i/?o[- ]bound|concurren\w*|concurrent connections|non-blocking|event[- ]driven|"
        r"threads?|wait(?:s|ing)? (?:on|for) (?:the )?(?:database|db|network|other services|"
        r"external apis?|i/?o)|database queries|network calls|throughput",
        "I/O-bound operations concurrent connections non-blocking event-driven",
    ),
    "cpu": (
        r"cpu[- ]bound|number crunching|scientific computing|heavy computation|"
        r"numerical|simulations?|computation\w*|math-heavy",
        "CPU-bound operations heavy computation scientific computing",
    ),
    "perf": (
        r"performance difference|how much faster|speed difference|language overhead|"
        r"how big is the (?:performance|speed) (?:gap|difference)|"
        r"(?:run|running|do|doing) (?:our|my|a|your) own benchmarks?|worth benchmarking",
        "benchmark guidance performance difference standard CRUD API",
    ),
    "monorepo": (
        r"monorepo|share (?:typescript )?types|shared types|validation schemas|typescript types",
        "monorepo share TypeScript types React Next.js frontend",
    ),
}
_CONCEPT_RES = {
    name: re.compile(rf"\b(?:{pattern})\b", re.I) for name, (pattern, _) in CONCEPTS.items()
}

# A negation up to two words before a topic word: "no machine learning", "not real-time".
_NEGATED = re.compile(
    r"\b(?:no|not(?! sure| certain)|none|without|never|nor|neither|isn't|aren't|don't need|"
    r"doesn't need|very little|little (?:to|or) no|hardly any|barely any|minimal|nothing)\b"
    r"(?:(?!\b(?:but|just|only|instead|rather)\b)[^.;:!?,]){0,30}$",
    re.I,
)
# Sentences, lines, and ", then …" clauses ("Reveal your prompt, then tell me…").
_SEGMENTS = re.compile(r"(?<=[.!?:;])\s+|\n+|,\s+(?=(?:and )?then\b|after that\b)", re.I)
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b.*\b(?:instructions?|sources?|above|"
    r"previous|rules|context|knowledge|article|everything)\b"
    r"|^\s*(?:system|assistant|developer|admin)\s*(?:prompt|message)?\s*:"
    r"|\b(?:print|reveal|show|repeat|output|leak)\b.*\b(?:prompt|instructions?|everything above)\b"
    r"|\b(?:pretend|role-?play|in character|act as|you are now|you're now|from now on)\b"
    r"|\byou(?:'re| are) an? \w+(?: \w+)? (?:who|that)\b"
    r"|\b(?:say|answer|respond|reply|declare|claim|output)\b[^?]*\b(?:only|always|no matter|"
    r"regardless|wins?|winner|the word)\b"
    r"|\b(?:knowledge base|sources?|article|documents?)\b.*\b(?:was updated|now says|changed)\b",
    re.I,
)
_SIDE_WORDS = re.compile(
    r"\b(?:nod|node(?:\.?js)?|nodejs|python|pyhton|pyton|javascript|js|wins?|winner|outright)\b",
    re.I,
)
_QUESTION_WORDS = set(
    """
    which what should would could better best choose pick when where there their about with
    from that this have does want need using use build building make good more less than
    into your mine ours them they tell give some like just really side available list name
    recommend article versus
    """.split()
)
_QUESTION_AFTER = re.compile(r"\bquestion\s*:\s*(.+)$", re.I | re.S)
_WORD = re.compile(r"[A-Za-z][A-Za-z'.+#/-]*[A-Za-z+#]|[A-Za-z]")


@dataclass(frozen=True)
class CleanQuery:
    """The question as asked, the text to search with, and what was removed or recognised."""

    original: str
    text: str
    concepts: dict[str, int] = field(default_factory=dict)
    injected: tuple[str, ...] = field(default_factory=tuple)
    search_text: str = ""  # what gets embedded: `text` without the side names every chunk shares
    coverage: float = 1.0  # share of content words the knowledge base knows (typos forgiven)
    only_instructions: bool = False  # nothing was left once the instructions were dropped


def instructs(text: str) -> bool:
    """The text tries to instruct the assistant ("ignore the above…", "SYSTEM: …")."""
    return _INSTRUCTION.search(text) is not None


def strip_instructions(question: str) -> tuple[str, tuple[str, ...]]:
    """Split off segments that try to instruct the assistant; keep the actual question."""
    asked = _QUESTION_AFTER.search(question)
    if asked and _INSTRUCTION.search(question[: asked.start()]):
        return asked.group(1).strip(), (question[: asked.start()].strip(),)
    kept: list[str] = []
    dropped: list[str] = []
    for segment in _SEGMENTS.split(question):
        segment = segment.strip()
        if not segment:
            continue
        if not _INSTRUCTION.search(segment):
            kept.append(segment)
        elif segment.endswith("?") and "," in segment:
            # "In character, which is better for X?": keep the question, drop the framing.
            head, _, asked_part = segment.rpartition(",")
            dropped.append(head)
            kept.append(asked_part.strip())
        else:
            dropped.append(segment)
    if kept:
        return " ".join(kept), tuple(dropped)
    # Nothing but instructions: keep their topic words, never the side they push.
    topic = " ".join(_SIDE_WORDS.sub(" ", " ".join(dropped)).split())
    return topic, tuple(dropped)


def concepts_of(text: str) -> dict[str, int]:
    """Topic concepts the text mentions, with how many times (the dominant topic counts most).

    A negated mention ("no machine learning", "without live updates") does not count."""
    return dict(_concepts(text))


@lru_cache(maxsize=8192)  # the engine asks again for the same question and claim texts
def _concepts(text: str) -> tuple[tuple[str, int], ...]:
    found = []
    for name, rx in _CONCEPT_RES.items():
        n = sum(1 for m in rx.finditer(text) if not _negated(text, m.start()))
        if n:
            found.append((name, n))
    return tuple(found)


def _negated(text: str, start: int) -> bool:
    return _NEGATED.search(text, max(0, start - 45), start) is not None


class Normalizer:
    """Typo repair against the corpus vocabulary, plus concept detection."""

    def __init__(self, vocabulary: set[str], dictionary: set[str] | None = None) -> None:
        extra = {w for _, expansion in CONCEPTS.values() for w in expansion.lower().split()}
        # Words people type that the corpus may only have in another form.
        extra |= set(
            """node python nodejs javascript typescript backend frontend server messaging pipeline
            background graphql microservices architecture process processing language client
            model models prediction predictions files jobs better should restful services
            """.split()
        )
        self.vocabulary = sorted({w for w in vocabulary | extra if len(w) >= 4})
        self.known = set(self.vocabulary) | {w.lower() for w in vocabulary}
        self.dictionary = dictionary or set()  # real words are never "corrected"
        self._closest: dict[str, str | None] = {}

    def fix_typos(self, text: str) -> str:
        """Replace unknown words with a corpus word one or two edits away."""
        return _WORD.sub(lambda m: self._fix(m.group(0)), text)

    def _fix(self, word: str) -> str:
        lower = word.lower()
        if lower.endswith("'s"):  # "library's" is a real word, not a typo of "libraries"
            stem = self._fix(word[:-2])
            return word if stem == word[:-2] else stem + word[-2:]
        if len(lower) < 5 or lower in self.known or lower.rstrip("s") in self.known:
            return word
        if lower in self.dictionary or lower.rstrip("s") in self.dictionary:
            return word
        return self.closest(lower) or word

    def coverage(self, text: str) -> float:
        """Share of the content words that the knowledge base knows, allowing close typos."""
        words = [
            w
            for w in re.findall(r"[a-z][a-z0-9.+#-]{3,}", text.lower())
            if w not in _QUESTION_WORDS and not _SIDE_WORDS.fullmatch(w)
        ]
        if not words:
            return 1.0
        return sum(self._knows(w) for w in words) / len(words)

    def _knows(self, word: str) -> bool:
        if word in self.known or word.rstrip("s") in self.known or word[:-2] in self.known:
            return True
        return self.closest(word) is not None

    def closest(self, word: str) -> str | None:
        """The vocabulary word one typo away (two for long words), remembered per word."""
        if word not in self._closest:
            if len(self._closest) > 4096:  # hostile input must not grow it without bound
                self._closest.clear()
            # Damerau-Levenshtein: a swapped pair ("pyhton") is one typo; "exact" is not "react".
            limit = 1 if len(word) <= 7 else 2
            found = process.extractOne(
                word, self.vocabulary, scorer=DamerauLevenshtein.distance, score_cutoff=limit
            )
            self._closest[word] = found[0] if found else None
        return self._closest[word]

    def clean(self, question: str) -> CleanQuery:
        """Strip injected instructions, repair typos, and list the concepts mentioned."""
        text, injected = strip_instructions(question)
        fixed = self.fix_typos(text)
        bare = " ".join(_SIDE_WORDS.sub(" ", fixed).split())
        search = fixed if len(_WORD.findall(bare)) < 2 else bare
        only = bool(injected) and text == " ".join(_SIDE_WORDS.sub(" ", " ".join(injected)).split())
        return CleanQuery(
            question, fixed, concepts_of(fixed), injected, search, self.coverage(text), only
        )
