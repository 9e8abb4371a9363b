"""Print the family x capability table of spectrascope's architecture registry as Markdown.

python scripts/capability_table.py > table.md
"""

from spectrascope.arch.capabilities import capability_markdown

if __name__ == "__main__":
    print(capability_markdown())
