"""The offline note engine: no model, no network. It never writes a word:
it splits the transcript's finals (latest revisions) into sentences and
sorts each into Subjective / Objective / Assessment / Plan by rules in
Japanese and English, citing the segment it came from. What no rule places
and nobody would chart (questions, greetings, fillers) is left out.

The rules, in order, for each sentence:
1. a greeting or filler ("Good morning", "はい") is left out;
2. a question is left out (the answer carries the content);
3. the patient's or family's words → Subjective (what they report, even
   "I took my temperature: 38 degrees");
4. plan words (prescribe, follow up, 出します, 来てください, 検査) → Plan;
5. assessment words (likely, diagnosis, 疑い, と思います) → Assessment;
6. finding words or measurements (blood pressure, 38.5°C, 所見, 血圧) → Objective;
7. otherwise the clinician's words → Objective (what a clinician states in
   the room is mostly what they observe); an unknown speaker's → Subjective.
It is a sorter, not a summariser; the page says so (``notes.formats``).
"""

import re

from notes.engines.base import DraftSentence, NoteDraft, NoteEngine, NoteRequest, NoteSegment, Progress

PROMPT_VERSION = "extractive-rules-1"

_JA_SPLIT = re.compile(r"(?<=[。！？!?])")
_EN_SPLIT = re.compile(r"(?<=[.!?])\s+")

_RULES = {
    "ja-JP": {
        "filler": re.compile(
            r"^(はい|ええ|うん|そうですか|なるほど|わかりました|分かりました|こんにちは|おはようございます|"
            r"こんばんは|お大事に(どうぞ)?|ありがとうございます|よろしくお願いします|失礼します)[。！!、]*$"
        ),
        "question": re.compile(r"(か[。？?]?$|[？?]$)"),
        "plan": re.compile(
            r"(出します|出しておきます|処方|来てください|受診|再診|検査|しましょう|予約|経過観察|紹介|服用|"
            r"飲んでください|飲んで|塗って|続けて|中止|安静|様子を見|入院|手術|注射|点滴|測って)"
        ),
        "assessment": re.compile(r"(と思います|でしょう|疑い|考えられ|可能性|診断|おそらく|らしい|ようです|の影響)"),
        "objective": re.compile(
            r"(血圧|体温|脈拍|脈|心拍|酸素|SpO2|所見|聴診|触診|視診|腫れ|発赤|圧痛|異常|正常|"
            r"\d+(\.\d+)?\s*(度|℃|mmHg|kg|%|回/分))"
        ),
    },
    "en-US": {
        "filler": re.compile(
            r"^(ok(ay)?|i see|alright|all right|right|yes|yeah|no|sure|thanks?( you)?|good (morning|afternoon|"
            r"evening)|hello|hi|mm+-?hmm+|uh-?huh|great|take care|bye)[.!,]*$",
            re.IGNORECASE,
        ),
        "question": re.compile(r"\?$"),
        "plan": re.compile(
            r"\b(prescrib\w*|let'?s|we('ll| will)|i('ll| will)|follow[- ]?up|come back|schedul\w*|order\w*|"
            r"refer\w*|continue (the|your)|stop (the|taking)|tests?\b|ecg|ekg|x-?ray|blood work|labs?\b|mri|"
            r"ct scan|ultrasound)",
            re.IGNORECASE,
        ),
        "assessment": re.compile(
            r"\b(likely|probably|possibl\w*|diagnos\w*|suggest\w*|consistent with|i think|looks like|seems|"
            r"suspect\w*|impression|rule out|differential)\b",
            re.IGNORECASE,
        ),
        "objective": re.compile(
            r"(\b(blood pressure|temperature|pulse|heart rate|respiratory rate|oxygen|saturation|on exam\w*|"
            r"examination|auscultation|lungs? (sound|are)|swelling|swollen|tender\w*|rash|normal|abnormal|"
            r"weight|bmi)\b|\d+(\.\d+)?\s*(°|degrees|mmhg|bpm|kg|%))",
            re.IGNORECASE,
        ),
    },
}


def split_sentences(text: str, language: str) -> list[str]:
    pieces = _JA_SPLIT.split(text) if language == "ja-JP" else _EN_SPLIT.split(text)
    return [p.strip() for p in pieces if p.strip()]


def classify(sentence: str, *, role: str | None, language: str) -> str | None:
    """The section of one sentence, or None to leave it out."""
    rules = _RULES.get(language, _RULES["en-US"])
    if rules["filler"].match(sentence):
        return None
    if rules["question"].search(sentence):
        return None
    if role in ("patient", "family"):
        return "subjective"
    if rules["plan"].search(sentence):
        return "plan"
    if rules["assessment"].search(sentence):
        return "assessment"
    if rules["objective"].search(sentence):
        return "objective"
    if role == "clinician":
        return "objective"
    return "subjective"


class ExtractiveNoteEngine(NoteEngine):
    name = "extractive"

    def generate(self, request: NoteRequest, *, progress: Progress) -> NoteDraft:
        sections: dict[str, list[DraftSentence]] = {"subjective": [], "objective": [], "assessment": [], "plan": []}
        total = max(1, len(request.segments))
        out = 0
        for n, segment in enumerate(request.segments, start=1):
            for sentence in self._sentences(segment, request.language):
                section = classify(sentence, role=segment.role, language=request.language)
                if section is not None:
                    sections[section].append(DraftSentence(text=sentence, evidence=[segment.segment_id]))
                    out += len(sentence)
            if n % 50 == 0:
                progress(n * 100 // total)
        return NoteDraft(
            sections=sections,
            model_id="",
            prompt_version=PROMPT_VERSION,
            input_chars=sum(len(s.text) for s in request.segments),
            output_chars=out,
        )

    @staticmethod
    def _sentences(segment: NoteSegment, language: str) -> list[str]:
        return split_sentences(
            " ".join(segment.text.split()) if language != "ja-JP" else segment.text.strip(), language
        )
