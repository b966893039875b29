"""What a French receipt says: shops, items, addresses, identifiers and the French ways of printing them.

Kept apart from layout and rendering so that the vocabulary can grow without touching the geometry.
Everything here is a pure function of its arguments (randomness comes in as a `random.Random`), and the
identifiers are *valid*: SIRET numbers pass the Luhn check and intra-EU VAT numbers carry the right key,
so that a model (or a validator in field assembly) never learns from impossible values.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from socratext.fields.normalize import luhn_ok

CENT = Decimal("0.01")

# VAT rates in force in France (metropolitan), in percent.
VAT_RATES: tuple[Decimal, ...] = (Decimal("2.1"), Decimal("5.5"), Decimal("10"), Decimal("20"))


def q2(x: Decimal) -> Decimal:
    """Round to the cent the way tills do (half up)."""
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------------------------------------
# Identifiers




def _luhn_complete(prefix: str) -> str:
    """Append the one digit that makes `prefix + digit` Luhn-valid."""
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def make_siren(rng: random.Random) -> str:
    """A 9-digit SIREN with a valid Luhn key (first digit non-zero, like real ones)."""
    return _luhn_complete(str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(7)))


def make_siret(rng: random.Random, siren: str) -> str:
    """SIRET = SIREN + 5-digit establishment number (NIC) whose last digit makes the 14 digits Luhn-valid."""
    nic4 = f"{rng.randint(0, 9999):04d}" if rng.random() < 0.4 else f"00{rng.randint(1, 99):02d}"
    return _luhn_complete(siren + nic4)


def vat_key(siren: str) -> int:
    """French intra-EU VAT key: (12 + 3 * (SIREN mod 97)) mod 97."""
    return (12 + 3 * (int(siren) % 97)) % 97


def make_vat_number(siren: str) -> str:
    return f"FR{vat_key(siren):02d}{siren}"


# --------------------------------------------------------------------------------------------------------
# Amounts, dates, times


def fmt_amount(x: Decimal, style: str = "fr") -> str:
    """Print an amount: `fr` → `1 234,56`, `fr_compact` → `1234,56`, `dot` → `1234.56`.

    The thousands separator is a plain space, so OCR sees `1` and `234,56` as two words; both belong to
    the same field.
    """
    neg = x < 0
    x = abs(q2(x))
    units, cents = f"{x:.2f}".split(".")
    if style == "fr" and len(units) > 3:
        groups = []
        while len(units) > 3:
            groups.insert(0, units[-3:])
            units = units[:-3]
        units = " ".join([units, *groups])
    sep = "." if style == "dot" else ","
    return ("-" if neg else "") + units + sep + cents


def contract_amount(x: Decimal) -> str:
    """The output contract's amount: dot decimal, two places, no grouping."""
    return f"{q2(x):.2f}"


def contract_quantity(x: Decimal) -> str:
    """`2` for whole quantities, `0.532` for weights (no trailing zeros)."""
    if x == x.to_integral_value():
        return str(int(x))
    return format(x.normalize(), "f")


def contract_rate(rate: Decimal) -> str:
    """`20.0`, `5.5`, `2.1`, `10.0`: one decimal place at least."""
    s = format(rate.normalize(), "f")
    return s if "." in s else s + ".0"


def fmt_rate(rate: Decimal, rng: random.Random) -> str:
    """How a receipt prints a VAT rate: `20,00%`, `20%`, `5,5 %`, `20.0%`... (code letters are separate)."""
    r = rate.normalize()
    choice = rng.randrange(5)
    if choice == 0:
        txt = f"{rate:.2f}".replace(".", ",")
    elif choice == 1:
        txt = format(r, "f").replace(".", ",")
    elif choice == 2:
        txt = f"{rate:.1f}".replace(".", ",")
    elif choice == 3:
        txt = f"{rate:.2f}"
    else:
        txt = format(r, "f")
    return txt + (" %" if rng.random() < 0.25 else "%")


MONTHS_FR = (
    "janv.",
    "févr.",
    "mars",
    "avr.",
    "mai",
    "juin",
    "juil.",
    "août",
    "sept.",
    "oct.",
    "nov.",
    "déc.",
)
MONTHS_FR_UPPER = ("JANV", "FEVR", "MARS", "AVR", "MAI", "JUIN", "JUIL", "AOUT", "SEPT", "OCT", "NOV", "DEC")

DATE_STYLES = ("dmy_slash", "dmy_slash_short", "d_mon_y", "iso", "dmy_dot", "dmy_dash", "d_MON_y",
               "wd_d_mon_y", "wdabbr_d_mon_yy", "WD_d_MON_y")
WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
TIME_STYLES = ("hm_colon", "hm_h", "hms_colon")


def fmt_date(year: int, month: int, day: int, style: str) -> str:
    """Print a date; the weekday styles (`lundi 28 mars 2022`, `mer. 02 févr. 22`, `MAR 25 JAN 2022`) come
    from real French restaurant tickets, where the weekday is part of the date words."""
    if style.startswith(("wd", "WD")):
        wd = WEEKDAYS_FR[datetime.date(year, month, day).weekday()]
        if style == "wd_d_mon_y":
            return f"{wd} {day} {MONTHS_FR[month - 1]} {year}"
        if style == "wdabbr_d_mon_yy":
            return f"{wd[:3]}. {day:02d} {MONTHS_FR[month - 1]} {year % 100:02d}"
        return f"{wd[:3].upper()} {day:02d} {MONTHS_FR_UPPER[month - 1]} {year}"
    if style == "dmy_slash":
        return f"{day:02d}/{month:02d}/{year}"
    if style == "dmy_slash_short":
        return f"{day:02d}/{month:02d}/{year % 100:02d}"
    if style == "d_mon_y":
        return f"{day} {MONTHS_FR[month - 1]} {year}"
    if style == "d_MON_y":
        return f"{day:02d} {MONTHS_FR_UPPER[month - 1]} {year}"
    if style == "iso":
        return f"{year}-{month:02d}-{day:02d}"
    if style == "dmy_dot":
        return f"{day:02d}.{month:02d}.{year}"
    if style == "dmy_dash":
        return f"{day:02d}-{month:02d}-{year}"
    raise ValueError(style)


def fmt_time(hour: int, minute: int, second: int, style: str) -> str:
    if style == "hm_colon":
        return f"{hour:02d}:{minute:02d}"
    if style == "hm_h":
        return f"{hour:02d}h{minute:02d}"
    if style == "hms_colon":
        return f"{hour:02d}:{minute:02d}:{second:02d}"
    raise ValueError(style)


# --------------------------------------------------------------------------------------------------------
# Places


CITIES: tuple[tuple[str, str], ...] = (
    ("75011", "PARIS"),
    ("75002", "PARIS"),
    ("75015", "PARIS"),
    ("69003", "LYON"),
    ("69007", "LYON"),
    ("13001", "MARSEILLE"),
    ("31000", "TOULOUSE"),
    ("33000", "BORDEAUX"),
    ("44000", "NANTES"),
    ("59000", "LILLE"),
    ("67000", "STRASBOURG"),
    ("35000", "RENNES"),
    ("34000", "MONTPELLIER"),
    ("06000", "NICE"),
    ("21000", "DIJON"),
    ("37000", "TOURS"),
    ("49100", "ANGERS"),
    ("38000", "GRENOBLE"),
    ("76000", "ROUEN"),
    ("51100", "REIMS"),
    ("29200", "BREST"),
    ("64000", "PAU"),
    ("87000", "LIMOGES"),
    ("92100", "BOULOGNE-BILLANCOURT"),
    ("94300", "VINCENNES"),
    ("45000", "ORLEANS"),
    ("80000", "AMIENS"),
    ("63000", "CLERMONT-FERRAND"),
    ("25000", "BESANCON"),
    ("57000", "METZ"),
    ("30000", "NIMES"),
    ("84000", "AVIGNON"),
    ("17000", "LA ROCHELLE"),
    ("74000", "ANNECY"),
    ("56100", "LORIENT"),
    ("78000", "VERSAILLES"),
    ("93200", "SAINT-DENIS"),
    ("42000", "SAINT-ETIENNE"),
    ("14000", "CAEN"),
)

STREET_TYPES = ("RUE", "AVENUE", "BOULEVARD", "PLACE", "QUAI", "ROUTE", "CHEMIN", "ALLEE", "COURS", "IMPASSE")
STREET_TYPES_ABBR = {"AVENUE": "AV.", "BOULEVARD": "BD", "ROUTE": "RTE", "PLACE": "PL.", "CHEMIN": "CHE."}
STREET_NAMES = (
    "DE LA REPUBLIQUE",
    "JEAN JAURES",
    "GAMBETTA",
    "DU MARCHE",
    "VICTOR HUGO",
    "DE LA GARE",
    "PASTEUR",
    "DU GENERAL DE GAULLE",
    "DES LILAS",
    "NATIONALE",
    "DE PARIS",
    "DU COMMERCE",
    "SAINT-MICHEL",
    "DE LA LIBERTE",
    "FOCH",
    "DES ECOLES",
    "CARNOT",
    "DU 8 MAI 1945",
    "EMILE ZOLA",
    "DE LA PAIX",
    "DES TANNEURS",
    "MOLIERE",
    "LOUIS BLANC",
    "DU PORT",
    "DES ARTS",
    "ARISTIDE BRIAND",
    "DE VERDUN",
)
EXTRA_ADDRESS = (
    "CENTRE COMMERCIAL LES ARCADES",
    "ZAC DES PORTES",
    "ZI NORD",
    "GALERIE MARCHANDE",
    "CC GRAND PLACE",
    "ZONE ARTISANALE",
)


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...]

    @property
    def value(self) -> str:
        """Contract value: the printed address lines joined with `, `."""
        return ", ".join(self.lines)


def make_address(rng: random.Random, title_case: bool) -> Address:
    street_type = rng.choice(STREET_TYPES)
    if rng.random() < 0.3 and street_type in STREET_TYPES_ABBR:
        street_type = STREET_TYPES_ABBR[street_type]
    number = str(rng.randint(1, 250))
    if rng.random() < 0.1:
        number += rng.choice((" BIS", " TER"))
    street = f"{number} {street_type} {rng.choice(STREET_NAMES)}"
    postcode, city = rng.choice(CITIES)
    lines: list[str] = []
    if rng.random() < 0.15:
        lines.append(rng.choice(EXTRA_ADDRESS))
    lines.append(street)
    lines.append(f"{postcode} {city}")
    if rng.random() < 0.12:
        lines = lines[:-2] + [f"{lines[-2]} {lines[-1]}"]  # everything on one line
    if title_case:
        lines = [to_title(x) for x in lines]
    return Address(tuple(lines))


def to_title(s: str) -> str:
    small = {"DE", "DU", "DES", "LA", "LE", "LES", "ET", "SUR"}
    out = []
    for i, w in enumerate(s.split(" ")):
        out.append(w.lower() if (i > 0 and w in small) else "-".join(p.capitalize() for p in w.split("-")))
    return " ".join(out)


def make_phone(rng: random.Random, postcode: str) -> str:
    region = {
        "7": "01",
        "9": "01",
        "6": "04",
        "1": "04",
        "3": "05",
        "4": "02",
        "5": "03",
        "2": "03",
        "8": "05",
        "0": "04",
    }.get(postcode[0], "01")
    return " ".join([region] + [f"{rng.randint(0, 99):02d}" for _ in range(4)])


# --------------------------------------------------------------------------------------------------------
# Shops and their goods

D = Decimal


@dataclass(frozen=True)
class Product:
    name: str
    low: Decimal
    high: Decimal
    rate: Decimal
    by_weight: bool = False  # sold per kg: quantity is a weight with 3 decimals
    max_qty: int = 3


def _p(name: str, low: str, high: str, rate: str, by_weight: bool = False, max_qty: int = 3) -> Product:
    return Product(name, D(low), D(high), D(rate), by_weight, max_qty)


SUPERMARKET_GOODS = (
    _p("LAIT DEMI ECREME 1L", "0.89", "1.35", "5.5", max_qty=6),
    _p("BEURRE DOUX 250G", "1.95", "3.20", "5.5"),
    _p("PAIN DE MIE COMPLET", "1.45", "2.60", "5.5"),
    _p("YAOURT NATURE X8", "1.50", "2.90", "5.5"),
    _p("POMMES GOLDEN", "1.99", "3.49", "5.5", by_weight=True),
    _p("BANANES", "1.49", "2.29", "5.5", True),
    _p("TOMATES GRAPPE", "2.49", "4.99", "5.5", True),
    _p("COMTE AOP 12 MOIS", "14.90", "24.90", "5.5", True),
    _p("COCA COLA 1,5L", "1.69", "2.39", "5.5", max_qty=4),
    _p("EAU MINERALE 6X1,5L", "1.99", "3.99", "5.5"),
    _p("VIN ROUGE BORDEAUX", "3.99", "12.90", "20"),
    _p("BIERE BLONDE 6X25CL", "3.49", "6.90", "20"),
    _p("LESSIVE LIQUIDE 2L", "5.90", "11.90", "20"),
    _p("PAPIER TOILETTE X12", "3.99", "7.49", "20"),
    _p("CAFE MOULU 250G", "2.49", "5.99", "5.5"),
    _p("PATES SPAGHETTI 500G", "0.79", "1.89", "5.5", max_qty=5),
    _p("RIZ BASMATI 1KG", "1.99", "3.99", "5.5"),
    _p("HUILE OLIVE VIERGE 1L", "6.49", "11.90", "5.5"),
    _p("CHOCOLAT NOIR 70%", "1.29", "2.99", "5.5", max_qty=4),
    _p("JAMBON BLANC X4", "2.39", "4.59", "5.5"),
    _p("EMMENTAL RAPE 200G", "1.59", "2.79", "5.5"),
    _p("OEUFS PLEIN AIR X12", "2.99", "4.49", "5.5"),
    _p("GEL DOUCHE 250ML", "1.49", "3.99", "20"),
    _p("LIQUIDE VAISSELLE", "1.29", "2.99", "20"),
    _p("JUS D'ORANGE 1L", "1.49", "2.99", "5.5"),
    _p("CEREALES CORN FLAKES", "1.99", "3.79", "5.5"),
    _p("POULET FERMIER", "7.90", "14.90", "5.5"),
    _p("SAUMON FUME 4 TR", "4.49", "7.99", "5.5"),
    _p("SAC CABAS", "0.10", "1.50", "20"),
    _p("CREME FRAICHE 20CL", "0.99", "1.89", "5.5"),
    _p("CAROTTES VRAC", "0.99", "1.99", "5.5", True),
    _p("COURGETTES", "1.99", "3.49", "5.5", True),
    _p("ESSUIE-TOUT X2", "1.69", "3.29", "20"),
    _p("CHAMPAGNE BRUT 75CL", "19.90", "34.90", "20"),
)

BAKERY_GOODS = (
    _p("BAGUETTE TRADITION", "1.10", "1.40", "5.5", max_qty=4),
    _p("BAGUETTE", "0.95", "1.20", "5.5", max_qty=4),
    _p("CROISSANT", "1.00", "1.40", "5.5", max_qty=6),
    _p("PAIN AU CHOCOLAT", "1.10", "1.50", "5.5", max_qty=6),
    _p("PAIN DE CAMPAGNE", "2.80", "4.50", "5.5"),
    _p("ECLAIR CAFE", "2.40", "3.60", "5.5"),
    _p("TARTE AUX POMMES", "2.90", "4.20", "5.5"),
    _p("FLAN PATISSIER", "2.50", "3.80", "5.5"),
    _p("SANDWICH JAMBON BEURRE", "3.90", "5.50", "10"),
    _p("FORMULE DEJEUNER", "7.90", "10.90", "10"),
    _p("CAFE", "1.20", "2.20", "10"),
    _p("CANETTE SODA 33CL", "1.50", "2.20", "5.5"),
    _p("QUICHE LORRAINE", "3.50", "4.90", "10"),
    _p("CHOUQUETTES X10", "2.00", "3.50", "5.5"),
    _p("PAIN AUX CEREALES", "2.20", "3.90", "5.5"),
    _p("MACARONS X6", "7.50", "12.00", "5.5"),
)

RESTAURANT_GOODS = (
    _p("PLAT DU JOUR", "11.50", "18.90", "10", max_qty=4),
    _p("ENTRECOTE FRITES", "18.50", "27.00", "10"),
    _p("SALADE CESAR", "12.50", "16.90", "10"),
    _p("MAGRET DE CANARD", "19.50", "26.00", "10"),
    _p("CAFE GOURMAND", "7.50", "10.50", "10"),
    _p("TIRAMISU MAISON", "6.50", "8.90", "10"),
    _p("CREME BRULEE", "6.00", "8.50", "10"),
    _p("MENU ENFANT", "9.50", "12.50", "10"),
    _p("EAU GAZEUSE 50CL", "3.50", "5.50", "10"),
    _p("VERRE VIN ROUGE", "4.50", "7.50", "20"),
    _p("DEMI PRESSION", "3.50", "5.50", "20", max_qty=4),
    _p("COCA COLA 33CL", "3.50", "4.80", "10"),
    _p("EXPRESSO", "1.80", "2.80", "10", max_qty=4),
    _p("PIZZA MARGHERITA", "10.50", "14.50", "10"),
    _p("BURGER MAISON", "15.50", "19.90", "10"),
    _p("GALETTE COMPLETE", "9.50", "12.50", "10"),
    _p("BOUTEILLE COTES DU RHONE", "22.00", "34.00", "20"),
    _p("CARAFE DE VIN 50CL", "12.00", "18.00", "20"),
    _p("MOUSSE AU CHOCOLAT", "6.00", "7.90", "10"),
    _p("TARTARE DE BOEUF", "17.50", "22.50", "10"),
)

PHARMACY_GOODS = (
    _p("DOLIPRANE 1000MG CPR", "1.16", "2.18", "2.1", max_qty=3),
    _p("SPASFON LYOC 80MG", "2.50", "4.20", "2.1"),
    _p("SMECTA 3G SACHETS", "3.20", "4.90", "2.1"),
    _p("EFFERALGAN 500MG", "1.50", "2.40", "2.1"),
    _p("GAVISCON SUSP BUV", "4.50", "6.90", "10"),
    _p("SERUM PHYSIO 40 UNIDOSES", "2.90", "4.50", "10"),
    _p("CREME SOLAIRE SPF50", "12.90", "19.90", "20"),
    _p("BROSSE A DENTS SOUPLE", "2.90", "5.90", "20"),
    _p("DENTIFRICE FLUOR 75ML", "2.50", "4.90", "20"),
    _p("GEL HYDROALCOOLIQUE", "2.90", "5.50", "20"),
    _p("PANSEMENTS X20", "2.90", "5.90", "20"),
    _p("VITAMINE C 1000MG", "4.90", "8.90", "10"),
    _p("SIROP TOUX SECHE", "5.90", "8.90", "10"),
    _p("IBUPROFENE 400MG", "2.20", "3.50", "10"),
    _p("THERMOMETRE DIGITAL", "7.90", "14.90", "20"),
    _p("BAUME A LEVRES", "3.50", "6.90", "20"),
)

DIY_GOODS = (
    _p("VIS BOIS 4X40 X200", "6.90", "12.90", "20"),
    _p("PEINTURE BLANCHE 2,5L", "24.90", "49.90", "20"),
    _p("ROULEAU PEINTURE 180MM", "5.90", "12.90", "20"),
    _p("PERCEUSE VISSEUSE 18V", "79.00", "189.00", "20", max_qty=1),
    _p("AMPOULE LED E27", "2.90", "8.90", "20", max_qty=6),
    _p("RUBAN ADHESIF MASQUAGE", "2.50", "5.90", "20"),
    _p("SILICONE SANITAIRE", "5.90", "11.90", "20"),
    _p("CHEVILLES NYLON X100", "4.90", "9.90", "20"),
    _p("SCIE EGOINE 500MM", "12.90", "24.90", "20", max_qty=1),
    _p("GANTS DE TRAVAIL", "3.90", "9.90", "20"),
    _p("MASTIC ACRYLIQUE", "3.90", "7.90", "20"),
    _p("TASSEAU PIN 2M", "2.90", "6.90", "20", max_qty=8),
    _p("PARQUET STRATIFIE M2", "12.90", "29.90", "20", max_qty=40),
    _p("CARRELAGE SOL M2", "19.90", "44.90", "20", max_qty=40),
    _p("ESCABEAU ALU 5 MARCHES", "59.00", "119.00", "20", max_qty=1),
    _p("SAC CIMENT 35KG", "7.90", "11.90", "20", max_qty=10),
    _p("TERREAU UNIVERSEL 40L", "4.90", "9.90", "20"),
)


@dataclass(frozen=True)
class ShopKind:
    kind: str
    names: tuple[str, ...]
    goods: tuple[Product, ...]
    n_items: tuple[int, int]
    legal_forms: tuple[str, ...]


SHOP_KINDS: dict[str, ShopKind] = {
    "supermarket": ShopKind(
        "supermarket",
        (
            "CARREFOUR MARKET",
            "SUPER U",
            "INTERMARCHE",
            "E.LECLERC",
            "MONOPRIX",
            "FRANPRIX",
            "LIDL",
            "AUCHAN",
            "CASINO SHOP",
            "SPAR",
            "NETTO",
            "BIOCOOP",
            "G20",
            "EPICERIE DU PORT",
            "MARCHE DES HALLES",
            "U EXPRESS",
            "CARREFOUR CITY",
            "NATURALIA",
            "PROXI SUPER",
            "COCCINELLE",
        ),
        SUPERMARKET_GOODS,
        (3, 14),
        ("SAS", "SARL", "SA", "SNC"),
    ),
    "bakery": ShopKind(
        "bakery",
        (
            "BOULANGERIE DUPONT",
            "AU PETRIN D'OR",
            "LA MIE DOREE",
            "BOULANGERIE MARTIN",
            "MAISON LEGRAND",
            "AUX DELICES DE LA GARE",
            "LE FOURNIL DE PIERRE",
            "BOULANGERIE PATISSERIE BERNARD",
            "PAUL",
            "LA FOURNEE",
            "AU BON PAIN",
            "L'EPI GOURMAND",
        ),
        BAKERY_GOODS,
        (1, 6),
        ("SARL", "EURL", "SAS"),
    ),
    "restaurant": ShopKind(
        "restaurant",
        (
            "LE PETIT BISTROT",
            "BRASSERIE DU COMMERCE",
            "CAFE DE LA GARE",
            "PIZZERIA NAPOLI",
            "LE RELAIS",
            "CHEZ MARCEL",
            "LA TABLE D'ANTOINE",
            "CREPERIE BRETONNE",
            "LE COMPTOIR",
            "BISTROT DES HALLES",
            "AU VIEUX CAMPEUR",
            "LE CAFE DU PORT",
            "L'ATELIER GOURMAND",
            "LE BOUCHON LYONNAIS",
        ),
        RESTAURANT_GOODS,
        (2, 8),
        ("SARL", "SAS", "EURL"),
    ),
    "pharmacy": ShopKind(
        "pharmacy",
        (
            "PHARMACIE DU CENTRE",
            "PHARMACIE DE LA MAIRIE",
            "GRANDE PHARMACIE",
            "PHARMACIE DES ARCADES",
            "PHARMACIE DE LA GARE",
            "PHARMACIE DU MARCHE",
            "PHARMACIE PRINCIPALE",
            "PHARMACIE DES LILAS",
        ),
        PHARMACY_GOODS,
        (1, 6),
        ("SELARL", "SARL", "SNC"),
    ),
    "diy": ShopKind(
        "diy",
        (
            "LEROY MERLIN",
            "CASTORAMA",
            "BRICOMARCHE",
            "MR BRICOLAGE",
            "BRICO DEPOT",
            "QUINCAILLERIE MODERNE",
            "WELDOM",
            "BRICORAMA",
        ),
        DIY_GOODS,
        (1, 7),
        ("SAS", "SA"),
    ),
}

TOTAL_LABELS = (
    "TOTAL",
    "TOTAL TTC",
    "A PAYER",
    "NET A PAYER",
    "MONTANT DU",
    "TOTAL A PAYER",
    "TOTAL EUR",
    "MONTANT TTC",
    "TOTAL (EUR)",
    "TOTAL TTC EUR",
    "Total",
    "Total TTC",
    "Net à payer",
)

# (printed keyword, contract value, weight)
PAYMENTS: dict[str, tuple[tuple[str, float], ...]] = {
    "card": (
        ("CB", 3),
        ("CARTE BANCAIRE", 2),
        ("CARTE BLEUE", 1),
        ("CB SANS CONTACT", 1),
        ("Carte bancaire", 1),
        ("PAIEMENT CB", 1),
        ("CB EMV", 1),
    ),
    "cash": (("ESPECES", 3), ("Espèces", 1), ("ESP", 1)),
    "cheque": (("CHEQUE", 3), ("Chèque", 1), ("CHQ", 1)),
    "meal_voucher": (
        ("TICKET RESTAURANT", 2),
        ("TITRE RESTAURANT", 1),
        ("CARTE TICKET RESTAURANT", 1),
        ("TR", 1),
        ("CHEQUE DEJEUNER", 1),
    ),
}

PAYMENT_WEIGHTS: dict[str, dict[str, float]] = {
    "supermarket": {"card": 7, "cash": 2, "cheque": 0.5, "meal_voucher": 0.7},
    "bakery": {"card": 5, "cash": 4, "cheque": 0.2, "meal_voucher": 1.5},
    "restaurant": {"card": 6, "cash": 1.5, "cheque": 0.3, "meal_voucher": 2.5},
    "pharmacy": {"card": 6, "cash": 2, "cheque": 1, "meal_voucher": 0},
    "diy": {"card": 7, "cash": 1, "cheque": 1, "meal_voucher": 0},
}

FOOTERS = (
    "MERCI DE VOTRE VISITE",
    "A BIENTOT",
    "MERCI ET A BIENTOT",
    "BONNE JOURNEE",
    "Merci de votre visite !",
    "TICKET A CONSERVER",
    "CONSERVEZ VOTRE TICKET",
    "ECHANGE SOUS 30 JOURS",
    "AVEC TICKET DE CAISSE",
    "Horaires : 8h30 - 20h00",
    "OUVERT 7J/7",
    "www.exemple-magasin.fr",
)

CASHIERS = ("MARIE", "SOPHIE", "KARIM", "JULIEN", "NADIA", "THOMAS", "LEA", "PAULINE", "YANIS", "CAISSE 1")
DISCOUNT_NAMES = (
    "REMISE FIDELITE",
    "PROMO",
    "REMISE",
    "BON DE REDUCTION",
    "REDUCTION CARTE",
    "Remise",
    "COUPON",
    "REMISE IMMEDIATE",
)


def weighted_choice(rng: random.Random, options: dict[str, float]) -> str:
    keys = [k for k, w in options.items() if w > 0]
    return rng.choices(keys, weights=[options[k] for k in keys])[0]


def random_price(rng: random.Random, p: Product) -> Decimal:
    """A price in the product's range that looks like a shop price (ends in 0/5/9 most of the time)."""
    cents_lo, cents_hi = int(p.low * 100), int(p.high * 100)
    c = rng.randint(cents_lo, cents_hi)
    if rng.random() < 0.7 and c >= 100:
        c = c - c % 10 + rng.choice((0, 5, 9, 9, 0))
    return Decimal(c) / 100
