"""The options that name a labelled set, shared by evaluate, train_categories and train_spam."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

BUSINESS_SET = Path(settings.BASE_DIR) / "samples" / "business"


def add_labelled_arguments(parser, what: str = "a mailbox or folder of labelled messages") -> None:
    parser.add_argument("--labelled", default=str(BUSINESS_SET / "messages"),
                        help=f"{what} (default: %(default)s)")  # fmt: skip
    parser.add_argument("--labels", default=str(BUSINESS_SET / "labels.csv"),
                        help="message_id,category,priority[,language,split,note] "
                             "(default: %(default)s)")  # fmt: skip
