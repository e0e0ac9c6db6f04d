"""What the generated month says: the words, topics and conversations of its comments (``_Text``,
``TOPICS``, ``_Conversation``), the phrases of threads in other languages, and the marks of today's
dumps (``_Today``: moderators' notes, text deleted after the crawl). ``reddit_pretrain_app.synth``
builds the threads and writes the dumps."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (annotations only: synth imports this module)
    from reddit_pretrain_app.synth import SynthConfig, SynthStats


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while True:
        number, rem = divmod(number, 36)
        out.append(digits[rem])
        if number == 0:
            return "".join(reversed(out))




_COMMON = (
    "the be to of and a in that have i it for not on with he as you do at this but his by from "
    "they we say her she or an will my one all would there their what so up out if about who get "
    "which go me when make can like time no just him know take people into year your good some "
    "could them see other than then now look only come its over think also back after use two how "
    "our work first well way even new want because any these give day most us is are was were "
    "been has had did does"
).split()
_CONTENT = (
    "really thing game movie phone reddit post comment article point agree disagree question "
    "answer problem idea city country music song band book read watch play team season player "
    "money job company school friend family dog cat food coffee beer pizza car house home world "
    "government law vote news story picture video internet computer code program software linux "
    "windows apple google science space earth water sun night morning weekend today yesterday "
    "tomorrow week month better worse best great awesome terrible funny weird interesting "
    "important true false right wrong sure maybe probably actually pretty still never always "
    "often sometimes everyone someone nobody something nothing everything why where here there "
    "love hate need feel try call ask tell find keep let seem help show hear run move live "
    "believe hold bring happen write provide sit stand lose pay meet include continue set learn "
    "change lead understand speak follow stop create spend grow open walk win offer remember "
    "consider appear buy wait serve die send expect build stay fall cut reach kill remain "
    "suggest raise pass sell require report decide pull"
).split()
_NON_ENGLISH = [
    "Das ist wirklich eine gute Idee, danke schön für die Erklärung.",
    "Je ne suis pas d'accord avec ça, mais c'est intéressant.",
    "これは本当に面白いですね。ありがとうございます！",
    "Это очень интересная статья, спасибо за ссылку.",
    "Eso es lo que pienso también, señor. ¿Por qué no?",
    "这个问题很有意思，我也想知道答案。",
    "Αυτό είναι πολύ ενδιαφέρον.",
]
FOREIGN_PHRASES = {  # what threads wholly in another language are made of (p_foreign_thread)
    "es": ["Creo que tienes razón, pero no estoy seguro.", "¿Alguien sabe dónde puedo comprar uno de estos?",
           "Me pasó lo mismo la semana pasada.", "Qué buena idea, gracias por compartir.", "No entiendo por qué la gente se queja tanto.",
           "Yo lo compré el año pasado y funciona muy bien.", "Eso depende de lo que quieras hacer con él.",
           "La verdad es que el precio me parece demasiado alto.", "Mi hermano tiene uno y dice que vale la pena.",
           "Hoy hace mucho calor en mi ciudad.", "Estoy de acuerdo contigo en casi todo.", "¿Y tú qué opinas de la nueva versión?"],
    "de": ["Ich glaube, du hast recht, aber ich bin mir nicht sicher.", "Weiß jemand, wo man so etwas kaufen kann?",
           "Das ist mir letzte Woche auch passiert.", "Gute Idee, danke fürs Teilen.", "Ich verstehe nicht, warum sich alle so aufregen.",
           "Ich habe es letztes Jahr gekauft und es funktioniert sehr gut.", "Das kommt darauf an, was du damit machen willst.",
           "Ehrlich gesagt finde ich den Preis zu hoch.", "Mein Bruder hat auch eins und sagt, es lohnt sich.",
           "Heute ist es bei uns wirklich heiß.", "Da stimme ich dir fast vollständig zu.", "Und was hältst du von der neuen Version?"],
    "fr": ["Je pense que tu as raison, mais je n'en suis pas sûr.", "Quelqu'un sait où on peut acheter ça ?",
           "Il m'est arrivé la même chose la semaine dernière.", "Bonne idée, merci pour le partage.",
           "Je ne comprends pas pourquoi les gens se plaignent autant.", "Je l'ai acheté l'année dernière et ça marche très bien.",
           "Ça dépend de ce que tu veux en faire.", "Honnêtement, je trouve que le prix est trop élevé.",
           "Mon frère en a un et il dit que ça vaut le coup.", "Il fait vraiment chaud chez nous aujourd'hui.",
           "Je suis d'accord avec toi sur presque tout.", "Et toi, tu en penses quoi de la nouvelle version ?"],
    "it": ["Penso che tu abbia ragione, ma non ne sono sicuro.", "Qualcuno sa dove si può comprare una cosa del genere?",
           "È successo anche a me la settimana scorsa.", "Bella idea, grazie per averlo condiviso.",
           "Non capisco perché la gente si lamenti così tanto.", "L'ho comprato l'anno scorso e funziona benissimo.",
           "Dipende da cosa ci vuoi fare.", "Sinceramente il prezzo mi sembra troppo alto.",
           "Mio fratello ne ha uno e dice che ne vale la pena.", "Oggi fa davvero caldo qui da noi.",
           "Sono d'accordo con te quasi su tutto.", "E tu cosa ne pensi della nuova versione?"],
    "nl": ["Ik denk dat je gelijk hebt, maar ik weet het niet zeker.", "Weet iemand waar je zoiets kunt kopen?",
           "Dat is mij vorige week ook overkomen.", "Goed idee, bedankt voor het delen.", "Ik snap niet waarom iedereen zo klaagt.",
           "Ik heb het vorig jaar gekocht en het werkt heel goed.", "Dat hangt ervan af wat je ermee wilt doen.",
           "Eerlijk gezegd vind ik de prijs te hoog.", "Mijn broer heeft er ook een en hij zegt dat het de moeite waard is.",
           "Het is vandaag echt warm bij ons.", "Ik ben het bijna helemaal met je eens.", "En wat vind jij van de nieuwe versie?"],
    "pt": ["Acho que você tem razão, mas não tenho certeza.", "Alguém sabe onde posso comprar um desses?",
           "Aconteceu a mesma coisa comigo na semana passada.", "Boa ideia, obrigado por compartilhar.",
           "Não entendo por que as pessoas reclamam tanto.", "Comprei no ano passado e funciona muito bem.",
           "Depende do que você quer fazer com isso.", "Sinceramente, acho o preço alto demais.",
           "Meu irmão tem um e diz que vale a pena.", "Hoje está muito calor aqui na minha cidade.",
           "Concordo com você em quase tudo.", "E você, o que acha da nova versão?"],
    "ru": ["Думаю, ты прав, но я не уверен.", "Кто-нибудь знает, где такое можно купить?",
           "У меня было то же самое на прошлой неделе.", "Отличная идея, спасибо, что поделился.",
           "Не понимаю, почему все так жалуются.", "Я купил его в прошлом году, и он отлично работает.",
           "Зависит от того, что ты хочешь с ним делать.", "Честно говоря, цена мне кажется слишком высокой.",
           "У моего брата такой же, и он говорит, что оно того стоит.", "Сегодня у нас очень жарко.",
           "Я согласен с тобой почти во всём.", "А ты что думаешь о новой версии?"],
}

_EMOJI = ["😂", "👍", "🔥", "🙃", "❤️", "🤔", "🎉", "👀"]
_BOTS = ["AutoModerator", "RemindMeBot", "WikiTextBot", "converter-bot", "tweet_poster_bot"]


class _Text:
    """Zipf-like sentences over a small vocabulary: frequent words really are frequent."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = _COMMON + _CONTENT
        weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(self.words))]
        total = 0.0
        self.cum = []
        for w in weights:
            total += w
            self.cum.append(total)

    def sentence(self, low: int = 3, high: int = 22) -> str:
        n = self.rng.randint(low, high)
        words = self.rng.choices(self.words, cum_weights=self.cum, k=n)
        words[0] = words[0].capitalize()
        return " ".join(words) + self.rng.choice(".....!?")

    def body(self) -> str:
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice(["lol", "This.", "Thanks!", "Same here", "What?", "Agreed.", "Yes", "no"])
        return " ".join(self.sentence() for _ in range(1 if r < 0.6 else self.rng.randint(2, 4)))


TOPICS = {
    "phone": (("phone", "battery", "screen", "camera", "charger"), ("fast", "cheap", "bright", "slow", "expensive")),
    "books": (("book", "novel", "author", "story", "ending"), ("long", "funny", "sad", "great", "boring")),
    "movies": (("movie", "film", "actor", "scene", "sequel"), ("scary", "funny", "long", "great", "boring")),
    "games": (("game", "level", "boss", "console", "controller"), ("hard", "fun", "easy", "great", "buggy")),
    "food": (("pizza", "recipe", "sauce", "cheese", "burger"), ("tasty", "spicy", "cheap", "great", "salty")),
    "music": (("song", "album", "band", "guitar", "concert"), ("loud", "catchy", "great", "sad", "new")),
}
"""Topics of the generated conversations: their nouns and adjectives (the demo asks about them)."""


class _Conversation:
    """Questions, answers and follow-ups about a thread's topic: replies that depend on their context."""

    QUESTIONS = ("What do you think of the new {n}?", "Any good {p}?", "Is the {n} worth it?", "Which {n} should I get?",
                 "Anyone else love the {n}?")
    ANSWERS = ("The {n} is really {a}, I love it.", "I think the {n} is {a} and the {n2} is {a2}.",
               "Get the {a} {n}, it is worth it.", "My {n} is {a}, the {n2} too.", "Honestly the {n} is {a}.")
    FOLLOW_UPS = ("Agreed, the {n} is {a}.", "No way, the {n} is {a2}.", "Why is the {n} so {a}?",
                  "Same here, my {n} is {a} too.", "Really? I found the {n} {a2}.")

    def __init__(self, rng: random.Random):
        self.rng = rng

    DETAILS = ("I paid {k} dollars for mine.", "I got it {d} days ago.", "{who} told me about it.",
               "Had it for {d} weeks now.", "{who} has one too.", "It was {k} bucks on sale.")
    PEOPLE = ("My brother", "My sister", "A friend", "My dad", "My mom", "My roommate", "A coworker", "My cousin")

    def say(self, topic: str, role: str, about: str | None = None) -> str:
        """A turn of ``role`` about ``topic``; mostly about the noun ``about`` the parent turn spoke of."""
        nouns, adjectives = TOPICS[topic]
        n, n2 = self.rng.sample(nouns, 2)
        if about in nouns and about != n2 and self.rng.random() < 0.8:
            n = about
        a, a2 = self.rng.sample(adjectives, 2)
        templates = {"question": self.QUESTIONS, "answer": self.ANSWERS, "follow_up": self.FOLLOW_UPS}[role]
        template = self.rng.choice(templates)
        text = template.format(n=n, n2=n2, a=a, a2=a2, p=n + "s")
        if role != "question" and self.rng.random() < 0.7:  # a personal detail: people do not repeat each other word for word
            text += " " + self.rng.choice(self.DETAILS).format(k=self.rng.randint(20, 999), d=self.rng.randint(2, 60),
                                                               who=self.rng.choice(self.PEOPLE))
        return text, n


_NEXT_ROLE = {"root": "question", "question": "answer", "answer": "follow_up", "follow_up": "answer", "noise": "question"}


_MOD_NOTE = ("Reminder from the moderators: please keep the discussion civil and on topic, and read the rules in "
             "the sidebar before posting. Comments that break rule 2 will be removed.")
_REMOVAL_TYPES = ("deleted", "removed", "removed by reddit")


class _Today:
    """The 2024 shape (``SynthConfig.shape``), applied to each record as it is written, from a random
    stream of its own."""

    _SPAN = 36**7 - 36**6
    _STEP = 2_654_435_761  # coprime with _SPAN: a permutation of the 7-character ids

    def __init__(self, cfg: SynthConfig, stats: SynthStats):
        self.cfg, self.stats = cfg, stats
        self.rng = random.Random(cfg.seed * 1_000_003 + 2024)

    def _scrambled(self, cid: str) -> str:
        return _base36(36**6 + (int(cid, 36) * self._STEP) % self._SPAN)

    def _marks(self, record: dict, ts: int, name: str) -> None:
        rng = self.rng
        record["retrieved_on"] = ts + 36 * 3600
        record.pop("retrieved_utc", None)
        record.setdefault("distinguished", None)
        record.setdefault("stickied", False)
        record["author_flair_text"] = rng.choice([None, None, None, "Verified", ":snoo: regular"])
        record["subreddit_type"] = "public"
        text_fields = [f for f in ("body", "title", "selftext") if record.get(f)]
        gone = any(record.get(f) in ("[deleted]", "[removed]") for f in text_fields)
        meta = {"retrieved_2nd_on": ts + 36 * 3600, "is_edited": bool(record.get("edited")),
                "was_deleted_later": False, "was_initially_deleted": gone}
        if gone:
            meta["removal_type"] = "deleted" if record.get("body", record.get("title")) == "[deleted]" else "removed"
        elif not record.get("stickied") and rng.random() < self.cfg.p_deleted_later:
            meta["was_deleted_later"] = True
            meta["removal_type"] = rng.choice(_REMOVAL_TYPES)
            token = f"leak{name}"
            for f in text_fields:
                record[f] = f"{record[f]} {token}"
            self.stats.deleted_later[name] = token
        record["_meta"] = meta

    def comment(self, record: dict) -> dict:
        rng = self.rng
        record = dict(record)
        record["id"] = self._scrambled(record["id"])
        if record["parent_id"].startswith("t1_"):
            record["parent_id"] = "t1_" + self._scrambled(record["parent_id"][3:])
        if record["parent_id"].startswith("t3_") and rng.random() < self.cfg.p_mod_note:
            record.update(author=f"mod_{record['subreddit']}", body=_MOD_NOTE, distinguished="moderator", stickied=True)
            self.stats.mod_notes.append(record["id"])
        if rng.random() < self.cfg.p_toxic:
            record["collapsed_reason_code"] = "POTENTIALLY_TOXIC"
        self._marks(record, int(float(record["created_utc"])), record["id"])
        record["created_utc"] = int(float(record["created_utc"]))  # numbers, as today's dumps write them
        return dict(sorted(record.items()))  # keys sorted, as from 2023-04

    def submission(self, record: dict) -> dict:
        record = dict(record)
        record["created_utc"] = int(float(record["created_utc"]))
        self._marks(record, record["created_utc"], f"t3_{record['id']}")
        return dict(sorted(record.items()))
