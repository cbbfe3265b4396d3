"""Gazetteer coverage: articles naming systems, groups and states added to the gazetteers.

Each positive names a system or a state only through an alias the gazetteers did not know
before (Sayyad-3, Narew, Siper, Tamir, Vityaz, Mamba, Shingung, Javelins/NLAWs, Ghanaian,
bare Taurus and Abrams); each negative is a confusable use of an ambiguous alias (Mistral the
AI company, a gepard at the zoo, Starstreak the racehorse, asters, the Ford Taurus, Hisar the
city in Haryana, Amazon's HQ2, which is not the HQ-2 missile).
"""

from __future__ import annotations

import pytest

from services.classify.classifier import Classifier, load_classifier

_DEFAULT = load_classifier()


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return _DEFAULT


# title, body, topics that must be tagged, entities that must be found
POSITIVES = [
    pytest.param(
        "Iran deploys Sayyad-3 missiles around nuclear sites",
        "Iran's army took delivery of new Sayyad-3 missiles and a Talash battery, state "
        "television reported on Saturday. The defence ministry said the Sayyad missiles had "
        "been deployed around the Fordow and Natanz sites.",
        ["air-defence-procurement"],
        ["country:IR", "system:ir-sam"],
        id="iran-sayyad",
    ),
    pytest.param(
        "Poland signs contract for more Narew launchers",
        "Poland's armament agency signed a contract worth 4 billion zlotys for more Narew "
        "launchers and Wisla radars, the defence ministry said. Deliveries of the Narew "
        "equipment are due to start in 2027.",
        ["air-defence-procurement"],
        ["country:PL", "system:piorun"],
        id="poland-narew",
    ),
    pytest.param(
        "Turkey orders Siper batteries from Aselsan",
        "Turkey's defence procurement agency ordered Siper batteries and Hisar-U missiles "
        "from Aselsan and Roketsan. Officials said the first Siper battery would be "
        "delivered next year.",
        ["air-defence-procurement"],
        ["country:TR", "system:hisar"],
        id="turkey-siper",
    ),
    pytest.param(
        "Israel approves purchase of Tamir missiles",
        "Israel's defence ministry approved the purchase of thousands of Tamir missiles and "
        "another Davids Sling battery. The deal with Rafael is worth about $1 billion, "
        "officials said.",
        ["air-defence-procurement"],
        ["country:IL", "system:davids-sling", "system:iron-dome"],
        id="israel-tamir",
    ),
    pytest.param(
        "Russian western district receives Vityaz batteries",
        "Russia's defence ministry said troops in the western military district had "
        "received the first Vityaz batteries this year. The deliveries were part of the "
        "state defence order.",
        ["air-defence-procurement"],
        ["country:RU", "system:s-350"],
        id="russia-vityaz",
    ),
    pytest.param(
        "Italy and France to supply second Mamba battery to Ukraine",
        "Italy and France will deliver a second Mamba battery to Ukraine, along with more "
        "Asters, officials said on Tuesday. The battery is expected to arrive before "
        "winter.",
        ["air-defence-procurement"],
        ["country:UA", "system:samp-t"],
        id="italy-mamba",
    ),
    pytest.param(
        "South Korea buys Shingung missiles and Biho vehicles",
        "South Korea's DAPA signed a contract with LIG Nex1 to buy Shingung missiles and "
        "K30 Biho vehicles. Korea's defence ministry said deliveries would begin in 2028.",
        ["air-defence-procurement"],
        ["country:KR", "organisation:lig-nex1", "system:km-sam"],
        id="korea-shingung",
    ),
    pytest.param(
        "Estonia buys more Javelins and NLAWs",
        "Estonia's army bought 800 Javelins and 1,200 NLAWs from the United States and "
        "Britain, officials said. Deliveries will begin in the spring.",
        ["arms-trade"],
        ["country:EE", "system:anti-tank"],
        id="estonia-javelins",
    ),
    pytest.param(
        "Germany approves export of Taurus missiles",
        "Germany approved the sale of Taurus cruise missiles and Abrams tanks to a partner, "
        "the government said. The licence also covers spare parts.",
        ["arms-trade"],
        ["country:DE", "system:tanks", "system:us-cruise"],
        id="germany-taurus",
    ),
    pytest.param(
        "Ghana buys armed drones from Turkey",
        "Ghana's army signed a deal to buy Bayraktar TB2 drones and armoured vehicles from "
        "Turkey. Ghanaian officials said the arms deal would help the military fight "
        "jihadist groups near the border with Burkina Faso.",
        ["arms-trade"],
        ["country:GH", "country:TR", "system:drones-mil"],
        id="ghana-drones",
    ),
    pytest.param(
        "Britain sends more Starstreak missiles to Ukraine",
        "Britain will supply hundreds more Starstreak missiles and Stormer launchers to "
        "Ukraine, the Ministry of Defence said. The Starstreak air defence system has been "
        "used against Russian drones.",
        ["air-defence-procurement"],
        ["country:GB", "country:UA", "system:starstreak"],
        id="uk-starstreak",
    ),
]

# title, body: no topic and no weapon-system entity
NEGATIVES = [
    pytest.param(
        "Mistral raises new funding round",
        "French AI start-up Mistral said on Monday it had raised 1.7 billion euros from "
        "investors including ASML. Mistral will use the money to buy more chips and deliver "
        "new models to customers.",
        id="mistral-ai",
    ),
    pytest.param(
        "Zoo welcomes two gepard cubs",
        "The city zoo said two gepard cubs, the German word for cheetah, were born last "
        "week. The zoo bought a new enclosure for the cubs and will deliver daily updates "
        "to visitors.",
        id="gepard-zoo",
    ),
    pytest.param(
        "Starstreak sold for record price at yearling sale",
        "Starstreak, a colt by a champion sire, was bought for 2.1 million guineas at the "
        "Newmarket yearling sale on Tuesday. The buyer said Starstreak would be trained for "
        "next year's Derby.",
        id="starstreak-horse",
    ),
    pytest.param(
        "How to grow asters in autumn",
        "Aster flowers bring late colour to the garden. Buy plants from a nursery in "
        "September and deliver plenty of water in the first weeks; asters are also popular "
        "with bees.",
        id="aster-garden",
    ),
    pytest.param(
        "Ford Taurus recall widens",
        "Ford said it would recall 300,000 Ford Taurus sedans over a faulty fuel pump. "
        "Dealers will deliver replacement parts to owners for free, the company said.",
        id="taurus-car",
    ),
    pytest.param(
        "Hisar gets 40 electric buses",
        "The Hisar municipal corporation bought 40 electric buses for the city, officials "
        "in Haryana said. The supplier will deliver the last buses in March.",
        id="hisar-city",
    ),
    pytest.param(
        "Amazon signs deal for HQ2 office towers",
        "Amazon signed a deal to buy two more office towers for HQ2 in Arlington, the company "
        "said. The first staff moved in last year.",
        id="amazon-hq2",
    ),
]


@pytest.mark.parametrize(("title", "body", "topics", "entities"), POSITIVES)
def test_new_aliases_are_recognised(
    clf: Classifier, title: str, body: str, topics: list[str], entities: list[str]
) -> None:
    result = clf.classify(title, body)
    assert set(topics) <= {t.id for t in result.topics}
    assert set(entities) <= {e.id for e in result.entities}


@pytest.mark.parametrize(("title", "body"), NEGATIVES)
def test_confusable_names_are_not_weapons(clf: Classifier, title: str, body: str) -> None:
    result = clf.classify(title, body)
    assert [t.id for t in result.topics] == []
    assert [e.id for e in result.entities if e.kind == "system"] == []
