"""One module per tab of the page; each has `create_tab(...)`."""
