"""The parts a service plays in the flow, named once here; which service plays each is the pack's.

A county's pack.yaml lists its services in the order they are offered, and gives each the roles it
plays (`roles: [certificate]`). The flow reads roles, never a service's code, so a county that offers
four services, or a sixth, changes its pack and nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialogs.pack import Pack

# Issues the 残疾人证: the assessment session is booked for it, its result is a certificate handed over.
CERTIFICATE = "certificate"
# A 两项补贴 (困难残疾人生活补贴, 重度残疾人护理补贴): reads the category, the hardship and a 申请理由.
DISABILITY_SUBSIDY = "disability_subsidy"
# Reads the holder's 残疾人证号 (the subsidies, the pension subsidy).
READS_CERTIFICATE_NO = "reads_certificate_no"

ROLES = (CERTIFICATE, DISABILITY_SUBSIDY, READS_CERTIFICATE_NO)

# Lexicon groups (content/common/lexicon.yaml `services:`) that name every service of a role ("两项补贴").
GROUP_WORDS = {"both_subsidies": DISABILITY_SUBSIDY}


def service_menu(pack: Pack) -> tuple[list[str], int, int]:
    """The services as offered (the code of menu number n at n - 1), and the numbers of "全部都办" and "不确定"."""
    order = list(pack.service_order)
    return order, len(order) + 1, len(order) + 2
