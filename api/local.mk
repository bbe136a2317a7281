# API component: built by api/ work (see issue 5).
